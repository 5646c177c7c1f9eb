// Every route this server answers, declared once (upstream's pkg/api/router.go and openapi paths).
import { validators } from '../fleet/messages';
import { handleAcks } from './handlers/acks';
import { handleArtifact } from './handlers/artifacts';
import { handleFileDelivery } from './handlers/file-delivery';
import { handleUploadBegin, handleUploadChunk, handleUploadComplete } from './handlers/uploads';
import { handleAuditUnenroll } from './handlers/audit';
import { answerRefusedCheckin, handleCheckin } from './handlers/checkin';
import { handleEnroll } from './handlers/enroll';
import { handlePgpKey } from './handlers/pgp-key';
import { handleStatus } from './handlers/status';
import { decodeAgentToServer } from '../opamp/codec';
import { handleOpampHttp, PROTOBUF } from '../opamp/http';
import { handleOpampWebSocket } from '../opamp/websocket';
import { FleetError } from '../fleet/errors';
import { StoreBusyError, StoreUnavailableError } from '../store/port';
import { route } from './route';

/**
 * OpAMP's refusals (upstream's OnConnecting): every client mistake with the key is 401; a store that
 * pushes back stays 429, and one that cannot answer 503 (upstream says 401, which opamp-go does not
 * retry: the Collector would drop its report).
 */
function opampAuthError(err: unknown): unknown {
  return err instanceof StoreBusyError || err instanceof StoreUnavailableError ? err : new FleetError('Unauthorized');
}

export const ROUTES = [
  route({ method: 'GET', path: '/api/status', limit: 'status', metric: 'status', auth: 'optional', handler: handleStatus }),
  route({
    method: 'POST', path: '/api/fleet/agents/enroll', limit: 'enroll', metric: 'enroll', auth: 'enrollment', userAgent: true,
    body: { what: 'enroll', validator: validators.enroll }, handler: handleEnroll,
  }),
  route({
    method: 'POST', path: '/api/fleet/agents/:id/checkin', limit: 'checkin', metric: 'checkin', auth: 'agent', userAgent: true,
    body: { what: 'checkin', validator: validators.checkin, gzip: true }, authRefused: answerRefusedCheckin, handler: handleCheckin,
  }),
  route({
    method: 'POST', path: '/api/fleet/agents/:id/acks', limit: 'ack', metric: 'acks', auth: 'agent',
    body: { what: 'ack', validator: validators.ack }, handler: handleAcks,
  }),
  route({
    method: 'POST', path: '/api/fleet/agents/:id/audit/unenroll', limit: 'audit_unenroll', metric: 'auditUnenroll', auth: 'agent',
    body: { what: 'audit unenroll', validator: validators.auditUnenroll }, handler: handleAuditUnenroll,
  }),
  route({
    method: 'GET', path: '/api/fleet/artifacts/:id/:sha2', limit: 'artifact', metric: 'artifacts', auth: 'agentKey',
    handler: handleArtifact,
  }),
  // Uploads authenticate the key first and then compare agents (upstream looks the upload up first).
  route({
    method: 'POST', path: '/api/fleet/uploads', limit: 'upload_start', metric: 'uploadStart', auth: 'agentKey',
    body: { what: 'upload begin', validator: validators.uploadBegin, empty: 'FileInfoBodyRequired', tooLarge: 'PayloadTooLarge' },
    handler: handleUploadBegin,
  }),
  route({
    method: 'PUT', path: '/api/fleet/uploads/:id/:n', limit: 'upload_chunk', metric: 'uploadChunk', auth: 'agentKey',
    drainRefused: true, handler: handleUploadChunk,
  }),
  route({
    method: 'POST', path: '/api/fleet/uploads/:id', limit: 'upload_end', metric: 'uploadEnd', auth: 'agentKey',
    body: { what: 'upload complete', validator: validators.uploadComplete, tooLarge: 'PayloadTooLarge' },
    handler: handleUploadComplete,
  }),
  route({
    method: 'GET', path: '/api/fleet/file/:id', limit: 'file_delivery', metric: 'deliverFile', auth: 'agentKey',
    handler: handleFileDelivery,
  }),
  route({
    method: 'GET', path: '/api/agents/upgrades/:version/pgp-public-key', limit: 'pgp_retrieval', metric: 'getPGPKey', auth: 'none',
    handler: handlePgpKey,
  }),
  // OpAMP (upstream 9.3.3+): Collectors authenticate with an enrollment token; answers are protobuf.
  route({
    method: 'POST', path: '/v1/opamp', limit: 'opamp', metric: 'opAMP', auth: 'enrollment',
    enabled: (config) => config.server.enableOpamp, bareErrors: PROTOBUF, authError: opampAuthError,
    body: { what: 'opamp', contentType: PROTOBUF, decode: decodeAgentToServer, gzip: true, tooLarge: 'PayloadTooLarge' },
    drainRefused: true, handler: handleOpampHttp,
  }),
  // Beyond upstream: OpAMP's WebSocket transport on the same path (a GET that is not an upgrade is a 400).
  route({
    method: 'GET', path: '/v1/opamp', limit: 'opamp', metric: 'opAMP', auth: 'enrollment',
    enabled: (config) => config.server.enableOpamp, bareErrors: PROTOBUF, authError: opampAuthError,
    upgrade: handleOpampWebSocket,
    handler: () => Promise.reject(new FleetError('BadRequest', 'Bad request: a WebSocket upgrade or a POST of application/x-protobuf')),
  }),
];
