// Admin commands: policies, enrollment tokens, agents, actions — on whichever store the config names
// (files, uploads, diagnostics and artifacts: files.ts).
import type { Argv } from 'yargs';
import { ACTION_TYPES } from '../fleet/actions';
import type { PolicyInput } from '../fleet/admin';
import type { Hit, Json } from '../store/documents';
import { fileArg, parseYamlInput, print, printCreated, readInput, table, withAdmin, type Common } from './admin-common';
import { registerFileCommands } from './files';
import { wholeNumber } from './usage-error';

const flat = <T>(h: Hit<T>): T & { _id: string } => ({ _id: h._id, ...h._source });

function parseDataArg(data: string | undefined): Json | undefined {
  if (data === undefined) return undefined;
  try {
    return JSON.parse(data) as Json;
  } catch (err) {
    throw new Error(`--data is not valid JSON: ${(err as Error).message}`);
  }
}

/** `argv`: the command line as given, which tells a lone `-` from an empty argument (fileArg). */
export function registerAdminCommands(y: Argv<Common>, argv: readonly string[]): Argv<Common> {
  y
    .command('policy', 'Agent policies', (p) => p
      .command('put <file>', 'Write a new revision of a policy from a YAML or JSON file (- for stdin)', (c) => c.positional('file', { type: 'string', demandOption: true })
        .option('force', { type: 'boolean', describe: 'take output_permissions privilege names this server does not know (a later Elasticsearch\'s)' }),
        async (a) => {
          const input = parseYamlInput(readInput(fileArg(a.file, argv, { stdin: true }))) as PolicyInput;
          // A policy may be written before the server's first start (which then makes no default policy).
          const hit = await withAdmin(a, (admin) => admin.putPolicy(input, { force: a.force === true }), { creates: true });
          print(a, { id: hit._source.policy_id, revision: hit._source.revision_idx }, () => [`policy ${hit._source.policy_id} revision ${hit._source.revision_idx}`]);
        })
      .command('list', 'List policies (latest revision of each)', (c) => c, async (a) => {
        const hits = await withAdmin(a, (admin) => admin.listPolicies());
        print(a, hits.map((h) => ({ id: h._source.policy_id, revision: h._source.revision_idx, '@timestamp': h._source['@timestamp'], default_fleet_server: h._source.default_fleet_server })),
          () => table([['ID', 'REVISION', 'UPDATED'], ...hits.map((h) => [h._source.policy_id, String(h._source.revision_idx), h._source['@timestamp']])]));
      })
      .command('show <id>', 'Show the latest revision of a policy', (c) => c.positional('id', { type: 'string', demandOption: true }), async (a) => {
        const hit = await withAdmin(a, (admin) => admin.showPolicy(a.id));
        print(a, hit._source);
      })
      .demandCommand(1, 'a subcommand is needed: put, list or show'))
    .command('enrollment-token <command>', 'Enrollment tokens', (p) => p
      .command('create', 'Create an enrollment token for a policy (shown once: it is not stored)', (c) => c
        .option('policy', { type: 'string', demandOption: true, describe: 'policy id' })
        .option('name', { type: 'string', describe: 'token name (default: "Default (<id>)")' })
        .option('namespace', { type: 'string', array: true, describe: 'namespace of the agents enrolled with it (repeatable)' }),
      async (a) => {
        const hit = await withAdmin(a, (admin) => admin.createEnrollmentToken(a.policy, a.name, a.namespace));
        printCreated(a, { id: hit._id, ...hit._source }, () => [hit._source.api_key]);
      })
      .command('list', 'List enrollment tokens (a prefix of each, never the token)', (c) => c.option('policy', { type: 'string', describe: 'only the tokens of this policy' }), async (a) => {
        const tokens = await withAdmin(a, (admin) => admin.listEnrollmentTokens(a.policy));
        print(a, tokens, () => table([['ID', 'NAME', 'POLICY', 'ACTIVE', 'PREFIX'],
          ...tokens.map((t) => [t.id, t.name, t.policy_id, String(t.active), `${t.prefix}…`])]));
      })
      .command('revoke <id>', 'Revoke an enrollment token', (c) => c.positional('id', { type: 'string', demandOption: true }), async (a) => {
        await withAdmin(a, (admin) => admin.revokeEnrollmentToken(a.id));
        print(a, { id: a.id, revoked: true }, () => [`revoked ${a.id}`]);
      })
      .demandCommand(1))
    .command('agents', 'Enrolled agents', (p) => p
      .command('list', 'List agents', (c) => c.option('policy', { type: 'string' }).option('all', { type: 'boolean', describe: 'include inactive agents' }),
        async (a) => {
          const hits = await withAdmin(a, (admin) => admin.listAgents({ policyId: a.policy, active: a.all ? undefined : true }));
          // TYPE tells OpenTelemetry Collectors (OPAMP) from Elastic Agents.
          print(a, hits.map(flat), () => table([['ID', 'TYPE', 'STATUS', 'POLICY', 'REVISION', 'LAST CHECK-IN', 'VERSION'],
            ...hits.map((h) => [h._id, h._source.type, h._source.active ? (h._source.last_checkin_status ?? 'enrolled') : 'unenrolled', h._source.policy_id ?? '',
              String(h._source.policy_revision_idx ?? ''), h._source.last_checkin ?? '', h._source.agent?.version ?? ''])]));
        })
      .command('show <id>', 'Show an agent document', (c) => c.positional('id', { type: 'string', demandOption: true }), async (a) => {
        const hit = await withAdmin(a, (admin) => admin.showAgent(a.id));
        print(a, flat(hit));
      })
      .command('reassign <id>', 'Move an agent to another policy, as Kibana does (its next check-in gets the new policy)', (c) => c
        .positional('id', { type: 'string', demandOption: true, describe: 'agent id' })
        .option('policy', { type: 'string', demandOption: true, describe: 'policy id' }),
      async (a) => {
        const hit = await withAdmin(a, (admin) => admin.reassignAgent(a.id, a.policy));
        print(a, { id: a.id, policy_id: a.policy, action_id: hit._source.action_id }, () => [`agent ${a.id} moved to policy ${a.policy} (action ${hit._source.action_id})`]);
      })
      .demandCommand(1, 'a subcommand is needed: list, show or reassign'))
    .command('actions', 'Agent actions', (p) => p
      .command('create', 'Create an action for agents', (c) => c
        .option('type', { type: 'string', demandOption: true, describe: `${ACTION_TYPES.filter((t) => t !== 'POLICY_REASSIGN').join(', ')} (POLICY_REASSIGN: agents reassign)` })
        .option('agents', { type: 'string', demandOption: true, describe: 'comma-separated agent ids' })
        .option('force', { type: 'boolean', describe: 'also for agent ids not (yet) enrolled' })
        .option('data', { type: 'string', describe: 'action data as JSON' })
        .option('expiration', { type: 'string', describe: 'RFC3339 time or duration from now (default 30 days)' })
        .option('start-time', { type: 'string', describe: 'RFC3339 time or duration from now' })
        .option('rollout-duration', { type: 'string', describe: 'spread start times over this duration (e.g. 1h)' })
        .option('input-type', { type: 'string', describe: 'INPUT_ACTION: the input that handles it (e.g. endpoint)' })
        .option('timeout', { coerce: wholeNumber('timeout'), describe: 'seconds the agent may take to carry it out (a whole number)' }),
      async (a) => {
        const data = parseDataArg(a.data);
        const hit = await withAdmin(a, (admin) => admin.createAction({
          type: a.type,
          agents: a.agents.split(',').map((s) => s.trim()).filter(Boolean),
          data,
          expiration: a.expiration,
          startTime: a['start-time'] as string | undefined,
          rolloutDuration: a['rollout-duration'] as string | undefined,
          inputType: a['input-type'] as string | undefined,
          timeout: a.timeout as number | undefined,
          knownAgents: !a.force,
        }));
        print(a, { id: hit._source.action_id, doc_id: hit._id, ...hit._source }, () => [hit._source.action_id]);
      })
      .command('show <id>', 'Show an action and the results agents reported', (c) => c.positional('id', { type: 'string', demandOption: true }), async (a) => {
        const { action, results } = await withAdmin(a, (admin) => admin.showAction(a.id));
        print(a, { action: flat(action), results: results.map(flat) });
      })
      .command('list', 'List recent actions', (c) => c.option('limit', { coerce: wholeNumber('limit', { min: 1 }), default: 100, describe: 'at most this many, newest first' }), async (a) => {
        const hits = await withAdmin(a, (admin) => admin.listActions(a.limit as number));
        print(a, hits.map(flat), () => table([['ACTION ID', 'TYPE', 'AGENTS', 'CREATED', 'EXPIRATION'],
          ...hits.map((h) => [h._source.action_id, h._source.type, String(h._source.agents?.length ?? 0), h._source['@timestamp'], h._source.expiration ?? ''])]));
      })
      .demandCommand(1, 'a subcommand is needed: create, show or list'));
  return registerFileCommands(y, argv);
}
