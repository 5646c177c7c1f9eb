// The connection info Elastic Agent writes to the component's stdin: one StartUpInfo message, no
// framing, then EOF.
import type { Readable } from 'node:stream';
import { proto } from './generated/control';

export async function readStartUpInfo(input: Readable): Promise<proto.StartUpInfo> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(c as Buffer);
  const info = proto.StartUpInfo.decode(Buffer.concat(chunks));
  if (!info.addr) throw new Error('agent mode: StartUpInfo on stdin has no addr');
  if (!info.services.includes(proto.ConnInfoServices.CheckinV2)) {
    throw new Error('agent mode: the agent does not offer the V2 control protocol (StartUpInfo.services lacks CheckinV2)');
  }
  return info;
}

/** grpc-js target for StartUpInfo.addr (a bare ":port" means this host). */
export function grpcTarget(addr: string): string {
  return addr.startsWith(':') ? `localhost${addr}` : addr;
}
