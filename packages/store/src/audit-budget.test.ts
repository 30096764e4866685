import { BuildBudget } from './audit-queue.ts';

describe('BuildBudget', () => {
  const clock = (start = 1000) => {
    const c = { t: start, now: () => c.t };
    return c;
  };

  it('allows the first build at once', () => {
    expect(new BuildBudget(clock().now).wait()).toBe(0);
  });

  it('after a build of d ms at share s, waits d × (1/s - 1) ms, so builds take at most s of the time', () => {
    const c = clock();
    const budget = new BuildBudget(c.now);
    const started = c.t;
    c.t += 10;
    budget.spent(started, 0.25);
    expect(budget.wait()).toBe(30);
    c.t += 20;
    expect(budget.wait()).toBe(10);
    c.t += 10;
    expect(budget.wait()).toBe(0);
  });

  it('does not wait at share 1 (or more), and treats a share of 0 or less as the floor of 0.001', () => {
    const c = clock();
    const budget = new BuildBudget(c.now);
    c.t += 10;
    budget.spent(c.t - 10, 1);
    expect(budget.wait()).toBe(0);
    budget.spent(c.t - 10, 3);
    expect(budget.wait()).toBe(0);
    budget.spent(c.t - 1, 0);
    expect(budget.wait()).toBeCloseTo(999);
    budget.spent(c.t - 1, Number.NaN);
    expect(budget.wait()).toBe(0);
  });
});
