// ScreeningConfig: per-organisation cut-offs and positive-screen protocols, with defaults.
// Validated once at start with ajv (validateScreeningConfig); nothing here reads the environment.
import { Ajv } from 'ajv';
import type { ErrorObject } from 'ajv';
import type { Questionnaire, QuestionnaireItem } from '@medplum/fhirtypes';

export type TaskPriority = 'routine' | 'urgent' | 'asap' | 'stat';

export interface ProtocolTask {
  /** Who owns the follow-up: a CareTeam/..., Organization/..., Practitioner/... reference. Default: the organisation. */
  owner?: string;
  /** Due within this many hours of the result (Task.restriction.period.end). */
  dueWithinHours: number;
  priority?: TaskPriority;
  description?: string;
}

export interface ProtocolCondition {
  /** Optional code for the health concern; default is text only ("Positive <instrument> screen"). */
  code?: { system: string; code: string; display?: string };
}

export interface ScreeningProtocol {
  /** Questionnaire id ("pc-ptsd-5"), its canonical URL, or "*" for every scored instrument. */
  questionnaire: string;
  /** Which results start the protocol. Default ["positive", "indeterminate"]. */
  on?: ('positive' | 'indeterminate')[];
  task?: ProtocolTask;
  /** When present, also record an unconfirmed health-concern Condition (never a diagnosis). */
  condition?: ProtocolCondition;
}

export interface OrganisationScreeningSettings {
  /**
   * Cut-off overrides keyed by Questionnaire id or canonical URL ("pc-ptsd-5"), or
   * "<id or url>#<score linkId>" for one score item of an instrument with several.
   */
  cutoffs?: Record<string, number>;
  protocols?: ScreeningProtocol[];
}

export interface ScreeningConfig {
  /** Applied to organisations without their own entry (and to requests without an organisation). */
  defaults?: OrganisationScreeningSettings;
  /** Keyed by Organization reference, e.g. "Organization/clinic-a". Replaces the defaults per field. */
  organisations?: Record<string, OrganisationScreeningSettings>;
  /** A response to a Questionnaire that cannot be found: "reject" (default, 422) or "accept" unvalidated. */
  unknownQuestionnaire?: 'reject' | 'accept';
}

const settingsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    cutoffs: { type: 'object', additionalProperties: { type: 'number' }, propertyNames: { minLength: 1 } },
    protocols: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['questionnaire'],
        properties: {
          questionnaire: { type: 'string', minLength: 1 },
          on: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['positive', 'indeterminate'] } },
          task: {
            type: 'object',
            additionalProperties: false,
            required: ['dueWithinHours'],
            properties: {
              owner: { type: 'string', pattern: '^(CareTeam|Organization|Practitioner|PractitionerRole)/[A-Za-z0-9\\-.]{1,64}$' },
              dueWithinHours: { type: 'number', exclusiveMinimum: 0 },
              priority: { enum: ['routine', 'urgent', 'asap', 'stat'] },
              description: { type: 'string', minLength: 1 },
            },
          },
          condition: {
            type: 'object',
            additionalProperties: false,
            properties: {
              code: {
                type: 'object',
                additionalProperties: false,
                required: ['system', 'code'],
                properties: { system: { type: 'string', minLength: 1 }, code: { type: 'string', minLength: 1 }, display: { type: 'string' } },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** JSON Schema of ScreeningConfig (exported for documentation and for the api's config loader). */
export const screeningConfigSchema = {
  $id: 'https://tic-exchange.org/schema/screening-config.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    defaults: settingsSchema,
    organisations: {
      type: 'object',
      propertyNames: { pattern: '^Organization/[A-Za-z0-9\\-.]{1,64}$' },
      additionalProperties: settingsSchema,
    },
    unknownQuestionnaire: { enum: ['reject', 'accept'] },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
const validate = ajv.compile<ScreeningConfig>(screeningConfigSchema);

function describe(errors: readonly ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const extra = e.keyword === 'additionalProperties' ? ` (${String(e.params.additionalProperty)})` : '';
    return `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${extra}`;
  });
}

/** Throws an Error listing every problem; returns the config typed. */
export function validateScreeningConfig(config: unknown): ScreeningConfig {
  if (!validate(config)) throw new Error(`Invalid screening configuration:\n  - ${describe(validate.errors).join('\n  - ')}`);
  return config;
}

/** The settings that apply to an organisation (its own entry, field by field over the defaults). */
export function settingsFor(config: ScreeningConfig, organization: string | undefined): OrganisationScreeningSettings {
  const own = organization ? config.organisations?.[organization] : undefined;
  return {
    cutoffs: own?.cutoffs ?? config.defaults?.cutoffs ?? {},
    protocols: own?.protocols ?? config.defaults?.protocols ?? [],
  };
}

function keysOf(q: Questionnaire): string[] {
  return [q.id, q.url].filter((k): k is string => typeof k === 'string' && k.length > 0);
}

/** The configured cut-off for a score item, most specific key first; undefined = the Questionnaire default. */
export function configuredCutoff(settings: OrganisationScreeningSettings, q: Questionnaire, item: QuestionnaireItem): number | undefined {
  const cutoffs = settings.cutoffs ?? {};
  for (const key of keysOf(q)) {
    const v = cutoffs[`${key}#${item.linkId}`];
    if (v !== undefined) return v;
  }
  for (const key of keysOf(q)) {
    const v = cutoffs[key];
    if (v !== undefined) return v;
  }
  return undefined;
}

/** The protocols of an organisation that apply to a Questionnaire. */
export function protocolsFor(settings: OrganisationScreeningSettings, q: Questionnaire): ScreeningProtocol[] {
  const keys = keysOf(q);
  return (settings.protocols ?? []).filter((p) => p.questionnaire === '*' || keys.includes(p.questionnaire));
}
