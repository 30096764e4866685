// When the API has time to spare for deferred work (building AuditEvents from the audit log,
// decision 0005): no request in flight and none started since the tick before, at two ticks in a
// row. A build blocks the event loop for tens of milliseconds, so it must not start in the first
// gap of a burst. Counting the requests started, not only those in flight at the tick, matters
// under a steady load: a tick often falls between one answer and the next request, and a build
// that started there held the requests that arrived meanwhile unread, so the next tick again saw
// none in flight and the builds went on back to back (measured: 12 µs per read of building inside
// the read benchmark's windows).
export interface IdleDetector {
  /** A request has started. */
  begin(): void;
  /** A request has ended (answered or its connection closed). */
  end(): void;
  /** Called once per tick of the background work: whether it may run now. */
  idle(): boolean;
}

export function idleDetector(quietTicksNeeded = 2): IdleDetector {
  let inFlight = 0;
  let started = 0;
  let startedAtTick = 0;
  let quietTicks = 0;
  return {
    begin() {
      inFlight++;
      started++;
    },
    end() {
      inFlight--;
    },
    idle() {
      const quiet = inFlight === 0 && started === startedAtTick;
      startedAtTick = started;
      quietTicks = quiet ? quietTicks + 1 : 0;
      return quietTicks >= quietTicksNeeded;
    },
  };
}
