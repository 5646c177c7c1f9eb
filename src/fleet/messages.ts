// The messages agents send, as TypeBox schemas: the TypeScript types and the validators come from
// these definitions alone. Extra properties are allowed, as Go's JSON decoding ignores them.
import { FormatRegistry, Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';

const Obj = <T extends Record<string, TSchema>>(props: T) => Type.Object(props, { additionalProperties: true });
const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-](\d{2}):(\d{2}))$/;

/**
 * What Go's time.Time takes from JSON (RFC 3339: `T` and `Z` upper case, a two-digit offset, fields in
 * range, the day within its month), where upstream decodes a date. Fractions stop at nanoseconds, as
 * Elasticsearch's date fields do.
 */
export function isRfc3339(v: string): boolean {
  const m = RFC3339.exec(v);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) return false;
  return m[7] === undefined || (Number(m[7]) <= 23 && Number(m[8]) <= 59);
}

function daysIn(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

FormatRegistry.Set('date-time', isRfc3339);
/** A date upstream decodes into a time.Time: anything else fails the request's decoding, as there. */
const DateTime = () => Type.String({ format: 'date-time' });

/**
 * An agent's local metadata is stored as sent, but `.fleet-agents` maps some of its fields (these, as
 * fleet-agents.json declares them): a value Elasticsearch cannot take there refuses the whole document,
 * a 500 after enrolment minted a key, or a check-in record the batch drops (the agent then shows
 * offline). Text and keyword fields take what Elasticsearch coerces into them (strings, numbers,
 * booleans, arrays of those), never an object; booleans take `true`/`false`, also quoted, or "". The
 * objects on the way to them (`elastic`, `elastic.agent`, `elastic.agent.build`, `host`, `os`) are
 * mapped objects: a concrete value there is refused too. The rest is the agent's.
 */
const LOCAL_METADATA_FIELDS: Record<string, 'keyword' | 'text' | 'boolean'> = {
  'elastic.agent.build.original': 'text', 'elastic.agent.id': 'keyword', 'elastic.agent.log_level': 'keyword',
  'elastic.agent.snapshot': 'boolean', 'elastic.agent.upgradeable': 'boolean', 'elastic.agent.unprivileged': 'boolean',
  'elastic.agent.fips': 'boolean', 'elastic.agent.version': 'text',
  'host.architecture': 'keyword', 'host.hostname': 'text', 'host.id': 'keyword', 'host.ip': 'text', 'host.mac': 'text', 'host.name': 'text',
  'os.family': 'keyword', 'os.full': 'text', 'os.kernel': 'text', 'os.name': 'text', 'os.platform': 'keyword', 'os.version': 'text',
};

// Arrays nest as deep as the body allows (http/body.ts bounds it); Elasticsearch flattens them.
const TextValue = Type.Recursive((Self) => Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null(), Type.Array(Self)],
  { description: 'a string, number or boolean' }));
const BooleanValue = Type.Recursive((Self) => Type.Union([Type.Boolean(), Type.Literal('true'), Type.Literal('false'), Type.Literal(''), Type.Null(), Type.Array(Self)],
  { description: 'true or false' }));

/** The object holding `fields` (paths below it); each mapped object on the way an object, null or []. */
function mappedObject(fields: Record<string, 'keyword' | 'text' | 'boolean'>): TSchema {
  const props: Record<string, TSchema> = {};
  const below: Record<string, Record<string, 'keyword' | 'text' | 'boolean'>> = {};
  for (const [path, kind] of Object.entries(fields)) {
    const dot = path.indexOf('.');
    if (dot < 0) props[path] = Type.Optional(kind === 'boolean' ? BooleanValue : TextValue);
    else (below[path.slice(0, dot)] ??= {})[path.slice(dot + 1)] = kind;
  }
  // An empty list is no value, as null is; a list of objects, which Elasticsearch also takes, is not
  // what agents send, and code reading these objects (enroll's elastic.agent.id) expects one.
  for (const [name, sub] of Object.entries(below)) {
    props[name] = Type.Optional(Type.Union([mappedObject(sub), Type.Null(), Type.Tuple([])], { description: 'an object' }));
  }
  return Obj(props);
}
const LocalMetadata = mappedObject(LOCAL_METADATA_FIELDS);

export const EnrollRequest = Obj({
  type: Type.String(),
  metadata: Obj({
    local: Type.Optional(Type.Unknown()),
    user_provided: Type.Optional(Type.Unknown()),
    tags: Type.Optional(Nullable(Type.Array(Type.String()))),
  }),
  id: Type.Optional(Nullable(Type.String())),
  replace_token: Type.Optional(Nullable(Type.String())),
  enrollment_id: Type.Optional(Nullable(Type.String())),
  shared_id: Type.Optional(Nullable(Type.String())),
});
export type EnrollRequest = Static<typeof EnrollRequest>;

const ComponentUnit = Obj({
  id: Type.Optional(Type.String()),
  type: Type.Optional(Type.String()),
  status: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
  payload: Type.Optional(Type.Unknown()),
});
export const Component = Obj({
  id: Type.Optional(Type.String()),
  type: Type.Optional(Type.String()),
  status: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
  units: Type.Optional(Nullable(Type.Array(ComponentUnit))),
});
export type Component = Static<typeof Component>;

/**
 * As upstream's UpgradeMetadata* types decode it (dates into time.Time, the percentage a float64, the
 * messages and failed state strings), in whatever state it comes: `.fleet-agents` maps these fields so.
 * download_rate may be a human-readable string, made a number before it is stored (upgrade-details.ts).
 */
const UpgradeMetadata = Obj({
  scheduled_at: Type.Optional(Nullable(DateTime())),
  retry_until: Type.Optional(Nullable(DateTime())),
  download_percent: Type.Optional(Nullable(Type.Number())),
  download_rate: Type.Optional(Nullable(Type.Union([Type.Number(), Type.String()]))),
  failed_state: Type.Optional(Nullable(Type.String())),
  error_msg: Type.Optional(Nullable(Type.String())),
  retry_error_msg: Type.Optional(Nullable(Type.String())),
});

export const UpgradeDetails = Obj({
  target_version: Type.String(),
  action_id: Type.String(),
  state: Type.String(),
  metadata: Type.Optional(Nullable(UpgradeMetadata)),
});
export type UpgradeDetails = Static<typeof UpgradeDetails>;

export const CheckinRequest = Obj({
  status: Type.String(),
  message: Type.Optional(Type.String()),
  ack_token: Type.Optional(Type.String()),
  // Checked by the check-in only when it differs from the stored value (fleet/checkin.ts): an agent
  // repeats the same metadata on every check-in.
  local_metadata: Type.Optional(Type.Unknown()),
  components: Type.Optional(Nullable(Type.Array(Component))),
  poll_timeout: Type.Optional(Type.String()),
  upgrade_details: Type.Optional(Nullable(UpgradeDetails)),
  agent_policy_id: Type.Optional(Type.String()),
  policy_revision_idx: Type.Optional(Type.Integer()),
  upgrade: Type.Optional(Nullable(Obj({
    rollbacks: Type.Optional(Nullable(Type.Array(Obj({ version: Type.String(), valid_until: Type.String() })))),
  }))),
});
export type CheckinRequest = Static<typeof CheckinRequest>;

export const AckEvent = Obj({
  type: Type.Optional(Type.String()),
  subtype: Type.Optional(Type.String()),
  agent_id: Type.Optional(Type.String()),
  action_id: Type.String(),
  message: Type.Optional(Type.String()),
  // Dates are checked event by event (fleet/acks.ts): upstream decodes each event on its own, so one
  // malformed event does not fail the others.
  timestamp: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  payload: Type.Optional(Type.Unknown()),
  data: Type.Optional(Type.Unknown()),
  action_input_type: Type.Optional(Type.String()),
  action_data: Type.Optional(Type.Unknown()),
  action_response: Type.Optional(Type.Unknown()),
  started_at: Type.Optional(Type.String()),
  completed_at: Type.Optional(Type.String()),
});
export type AckEvent = Static<typeof AckEvent>;

export const AckRequest = Obj({ events: Nullable(Type.Array(AckEvent)) });
export type AckRequest = Static<typeof AckRequest>;

export const AuditUnenrollRequest = Obj({ reason: Type.String(), timestamp: DateTime() });
export type AuditUnenrollRequest = Static<typeof AuditUnenrollRequest>;

/**
 * Upload messages are free-form JSON objects (extra keys are stored with the file); what they must
 * hold is checked by the upload logic, which names each missing field as upstream does.
 */
export const UploadBeginRequest = Type.Unknown();
export const UploadCompleteRequest = Obj({ transithash: Type.Optional(Type.Unknown()) });

export interface Validator<T> {
  check(value: unknown): value is T;
  /** The first problem, phrased like a JSON decode error; its path after `at` (where the value sits in its message). */
  explain(value: unknown, at?: string): string;
}

/**
 * Compiled at its first use, not when the program loads: a process that never sees that message (a
 * cluster's primary, an idle server) does not run TypeBox's compiler, whose code and output would stay
 * in its heap, and whose type checks ran hot enough at start for V8 to optimise them.
 */
function compile<T extends TSchema>(schema: T): Validator<Static<T>> {
  let compiled: TypeCheck<T> | undefined;
  const c = (): TypeCheck<T> => (compiled ??= TypeCompiler.Compile(schema));
  return {
    check: (v): v is Static<T> => c().Check(v),
    explain: (v, at = '') => {
      const first = c().Errors(v).First();
      if (!first) return 'invalid';
      const e = deepest(first);
      // A union that says what it takes is named so ("Expected an object"), not "Expected union value".
      const message = e.type === ValueErrorType.Union && typeof e.schema.description === 'string' ? `Expected ${e.schema.description}` : e.message;
      return `${at + e.path || '/'}: ${message}`;
    },
  };
}

/**
 * Where a value failed, as deep as it can be told: a nullable object's error is "Expected union value"
 * at the object; the alternative that got furthest names the field itself.
 */
function deepest(e: ValueError): ValueError {
  let best = e;
  for (const alternative of e.errors ?? []) {
    const first = alternative.First();
    if (!first) continue;
    const d = deepest(first);
    if (d.path.length > best.path.length) best = d;
  }
  return best;
}

/** `local_metadata` as `.fleet-agents` maps it: enroll's `metadata.local`, and a check-in's when it changed. */
export const localMetadataValidator = compile(LocalMetadata);
/** A check-in's upgrade_details, checked again where they are stored (fleet/upgrade-details.ts). */
export const upgradeDetailsValidator = compile(UpgradeDetails);

export const validators = {
  enroll: compile(EnrollRequest),
  checkin: compile(CheckinRequest),
  ack: compile(AckRequest),
  auditUnenroll: compile(AuditUnenrollRequest),
  uploadBegin: compile(UploadBeginRequest),
  uploadComplete: compile(UploadCompleteRequest),
};
