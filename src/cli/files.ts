// Admin commands for files: diagnostics from an agent, uploads, files delivered to agents, artifacts.
// Logic shared with other front ends is in fleet/files-admin.ts; this module owns the local files.
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, readFileSync, rmSync, statSync, type Stats } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Argv } from 'yargs';
import { AdminError } from '../fleet/admin';
import {
  buildArtifact, findUpload, manifestEntry, MAX_ARTIFACT_BYTES, publishFile, putArtifact, readVerifiedUpload, requestDiagnostics,
  uploadSummary, waitForUpload, DEFAULT_DELIVERY_CHUNK, DIAGNOSTICS_EXPIRATION, MAX_DELIVERY_CHUNK, type ArtifactCompression, type UploadProgress,
} from '../fleet/files-admin';
import type { UploadRecord } from '../store/file-ports';
import type { Store } from '../store/port';
import { parseDuration } from '../util/duration';
import { withContext } from '../util/error-text';
import { fileArg, print, table, withAdmin, type Common } from './admin-common';
import { wholeNumber } from './usage-error';

const list = (s: string | undefined): string[] => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);
const note = (line: string): void => void process.stderr.write(`${line}\n`);

/** The agent names the file; only its last path component is used, so a name cannot point elsewhere. */
function localName(upload: UploadRecord): string {
  const name = upload.doc['file'] && typeof upload.doc['file'] === 'object' ? (upload.doc['file'] as Record<string, unknown>)['name'] : undefined;
  const base = typeof name === 'string' ? name.split(/[/\\]/).pop()! : '';
  return base === '' || base === '.' || base === '..' || base.includes('\0') ? `upload-${upload.uploadId}` : base;
}

interface Written {
  path: string;
  size: number;
  sha256: string;
}

/**
 * Writes a READY upload to `out` (default: the agent's file name in the current directory; a directory
 * gets that name inside it), streaming and verifying it chunk by chunk. The bytes go to a temporary file
 * beside the target, renamed into place only once every hash matched; on any failure it is removed.
 */
async function writeUpload(store: Store, upload: UploadRecord, out: string | undefined): Promise<Written> {
  let path = resolve(out ?? localName(upload));
  if (out !== undefined && statSync(path, { throwIfNoEntry: false })?.isDirectory()) path = join(path, localName(upload));
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.part`);
  const interrupted = (): void => {
    rmSync(tmp, { force: true });
    process.exit(130);
  };
  const reader = readVerifiedUpload(store.uploads, upload);
  // Opened before the first byte is read, so the file exists when a failure removes it (a stream
  // opening it lazily could create it after the removal). Owner-only: diagnostics hold configuration.
  const handle = await open(tmp, 'wx', 0o600);
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  try {
    await pipeline(reader.bytes, handle.createWriteStream({ flush: true }));
    await rename(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  } finally {
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted);
  }
  return { path, ...reader.verified() };
}

function printWritten(a: Common, w: Written, extra: Record<string, unknown> = {}): void {
  print(a, { ...extra, ...w }, () => [`wrote ${w.path} (${w.size} bytes, sha256 ${w.sha256})`]);
}

function progressLine(p: UploadProgress): string {
  switch (p.kind) {
    case 'started': return `upload started: ${localName(p.upload)}, ${p.upload.size} bytes (upload ${p.upload.uploadId})`;
    case 'chunks': return `chunks stored: ${p.stored}/${p.total}`;
    case 'ready': return 'upload READY';
  }
}

/** The file's stat, when it is a file one can read; otherwise an error naming it. */
function regularFile(file: string): Stats {
  let st: Stats;
  try {
    st = statSync(file);
  } catch (err) {
    throw withContext(`cannot read ${file}`, err);
  }
  if (!st.isFile()) throw new AdminError(`cannot read ${file}: not a regular file`);
  return st;
}

function durationArg(name: string, value: string): number {
  try {
    return parseDuration(value);
  } catch {
    throw new AdminError(`--${name} ${value}: give a duration like 10m or 90s`);
  }
}

/** `argv`: the command line as given (fileArg). */
export function registerFileCommands(y: Argv<Common>, argv: readonly string[]): Argv<Common> {
  return y
    .command('diagnostics', 'Diagnostics from an agent', (p) => p
      .command('request <agent>', 'Ask an agent for a diagnostics bundle, wait for its upload and write it to a file', (c) => c
        .positional('agent', { type: 'string', demandOption: true, describe: 'agent id' })
        .option('output', { alias: 'o', type: 'string', describe: 'file to write (default: the bundle\'s name, in the current directory)' })
        .option('timeout', { type: 'string', default: '10m', describe: 'how long to wait for the upload' })
        .option('additional-metrics', { type: 'string', describe: 'comma-separated: CPU, CONN' })
        .option('exclude-events-log', { type: 'boolean', describe: 'leave the events log out of the bundle' }),
      async (a) => {
        const timeoutMs = durationArg('timeout', a.timeout);
        const out = await withAdmin(a, async (_admin, store) => {
          const actionId = await requestDiagnostics(store, {
            agentId: a.agent, additionalMetrics: list(a['additional-metrics'] as string | undefined), excludeEventsLog: a['exclude-events-log'] as boolean | undefined,
          });
          note(`requested diagnostics from agent ${a.agent}: action ${actionId} (expires in ${DIAGNOSTICS_EXPIRATION}); waiting up to ${a.timeout} for the agent's upload`);
          const upload = await waitForUpload(store, actionId, a.agent, { timeoutMs, progress: (p) => note(progressLine(p)) });
          const written = await writeUpload(store, upload, a.output);
          return { action_id: actionId, upload_id: upload.uploadId, written };
        });
        printWritten(a, out.written, { action_id: out.action_id, upload_id: out.upload_id });
      })
      .demandCommand(1, 'a subcommand is needed: request'))
    .command('uploads', 'Files agents uploaded (diagnostics, Endpoint files)', (p) => p
      .command('list', 'List uploads, newest first', (c) => c
        .option('agent', { type: 'string', describe: 'agent id' })
        .option('action', { type: 'string', describe: 'action id' })
        .option('limit', { coerce: wholeNumber('limit', { min: 1 }), default: 100, describe: 'at most this many' }),
      async (a) => {
        const rows = await withAdmin(a, async (_admin, store) =>
          (await store.uploads.listUploads({ agentId: a.agent, actionId: a.action, limit: a.limit as number })).map(uploadSummary));
        print(a, rows, () => table([['UPLOAD ID', 'AGENT', 'ACTION', 'NAME', 'SIZE', 'STATUS', 'STARTED'],
          ...rows.map((r) => [r.upload_id, r.agent_id, r.action_id, r.name, String(r.size), r.status, r.started])]));
      })
      .command('get <id>', 'Write a READY upload to a file, verifying every chunk and the whole', (c) => c
        .positional('id', { type: 'string', demandOption: true, describe: 'upload id' })
        .option('output', { alias: 'o', type: 'string', describe: 'file to write (default: the upload\'s name, in the current directory)' }),
      async (a) => {
        const written = await withAdmin(a, async (_admin, store) => writeUpload(store, await findUpload(store.uploads, a.id), a.output));
        printWritten(a, written, { upload_id: a.id });
      })
      .command('delete <id>', 'Delete an upload (metadata and chunks)', (c) => c.positional('id', { type: 'string', demandOption: true, describe: 'upload id' }),
        async (a) => {
          await withAdmin(a, async (_admin, store) => store.uploads.deleteUpload(await findUpload(store.uploads, a.id)));
          print(a, { upload_id: a.id, deleted: true }, () => [`deleted upload ${a.id}`]);
        })
      .demandCommand(1, 'a subcommand is needed: list, get or delete'))
    .command('files', 'Files delivered to agents', (p) => p
      .command('put <file>', 'Publish a file for agents to download', (c) => c
        .positional('file', { type: 'string', demandOption: true })
        .option('agents', { type: 'string', demandOption: true, describe: 'comma-separated agent ids that may download it' })
        .option('id', { type: 'string', describe: 'file id (default: a new UUID)' })
        .option('name', { type: 'string', describe: 'file name (default: the file\'s own)' })
        .option('mime-type', { type: 'string', default: 'application/octet-stream' })
        // publishFile's own bound, checked here too so that a size out of range is a usage error before any store opens.
        .option('chunk-size', { coerce: wholeNumber('chunk-size', { min: 1, max: MAX_DELIVERY_CHUNK }), default: DEFAULT_DELIVERY_CHUNK, describe: 'bytes per stored chunk' })
        .option('force', { type: 'boolean', describe: 'also for agent ids not (yet) enrolled' }),
      async (a) => {
        const file = fileArg(a.file, argv);
        regularFile(file); // a missing file is one clear line before the store is opened
        const agentIds = list(a.agents);
        const meta = await withAdmin(a, async (admin, store) => {
          if (!a.force) await admin.requireAgents(agentIds);
          return publishFile(store.deliveries, {
            id: a.id ?? randomUUID(), name: a.name ?? basename(file), mimeType: a['mime-type'] as string, chunkSize: a['chunk-size'] as number, agentIds,
          }, () => createReadStream(file));
        });
        const url = `/api/fleet/file/${meta.id}`;
        print(a, { id: meta.id, name: meta.name, size: meta.size, sha256: meta.sha256, mime_type: meta.mimeType, chunk_size: meta.chunkSize, agents: meta.agentIds, url },
          () => [meta.id, `${meta.name}: ${meta.size} bytes, sha256 ${meta.sha256}, for ${meta.agentIds.join(', ')}`, `agents fetch it at ${url}`]);
      })
      .demandCommand(1, 'a subcommand is needed: put'))
    .command('artifacts', 'Artifacts agents download (.fleet-artifacts)', (p) => p
      .command('put <file>', 'Store a file as an artifact and print its artifact_manifest entry', (c) => c
        .positional('file', { type: 'string', demandOption: true })
        .option('identifier', { type: 'string', demandOption: true, describe: 'artifact identifier, e.g. endpoint-exceptionlist-linux-v1' })
        .option('package-name', { type: 'string', default: 'endpoint' })
        .option('compression', { choices: ['zlib', 'none'] as const, default: 'zlib' as const }),
      async (a) => {
        const file = fileArg(a.file, argv);
        const size = regularFile(file).size;
        if (size > MAX_ARTIFACT_BYTES) throw new AdminError(`${file} is ${size} bytes; artifacts are at most ${MAX_ARTIFACT_BYTES} bytes (one document each)`);
        let bytes: Buffer;
        try {
          bytes = readFileSync(file);
        } catch (err) {
          throw withContext(`cannot read ${file}`, err);
        }
        const doc = buildArtifact(bytes, {
          identifier: a.identifier, packageName: a['package-name'] as string, compression: a.compression as ArtifactCompression,
        });
        // An artifact a policy names may be stored before the server's first start, as the policy may.
        const stored = await withAdmin(a, (_admin, store) => putArtifact(store, doc), { creates: true });
        const entry = manifestEntry(stored.doc);
        if (!stored.created) note(`artifact ${doc.identifier} with this content is stored already (compression ${stored.doc.compression_algorithm}); not written again`);
        print(a, { identifier: stored.doc.identifier, decoded_sha256: stored.doc.decoded_sha256, created: stored.created, artifact_manifest_entry: { [stored.doc.identifier]: entry } },
          () => [`${stored.doc.identifier} ${stored.doc.decoded_sha256}`, '', 'artifact_manifest.artifacts entry:',
            JSON.stringify({ [stored.doc.identifier]: entry }, null, 2)]);
      })
      .demandCommand(1, 'a subcommand is needed: put'));
}
