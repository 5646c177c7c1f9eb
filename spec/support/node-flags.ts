// The V8 flags the program ships with (package.json fleetServer.nodeFlags): tests run it the same way.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const NODE_FLAGS: string[] = (JSON.parse(readFileSync(resolve(__dirname, '../../package.json'), 'utf8')) as { fleetServer: { nodeFlags: string[] } }).fleetServer.nodeFlags;
