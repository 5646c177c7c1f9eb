// Writing a large answer as it is read (file delivery): backpressure from the socket paces the
// reads, so a transfer holds about one chunk whatever the file's size, and a client that stops
// reading is cut off at the write timeout (upstream's server.timeouts.write) instead of holding
// its file open for ever.
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FleetError } from '../fleet/errors';

export async function streamOut(res: ServerResponse, data: AsyncIterable<Uint8Array>, writeTimeoutMs: number): Promise<void> {
  const timer = setTimeout(() => res.destroy(), writeTimeoutMs);
  timer.unref();
  try {
    await pipeline(Readable.from(data, { objectMode: false, highWaterMark: 1 }), res);
  } catch (err) {
    // The head is out: the error cannot be answered, only logged; a client gone is no fault.
    if (res.destroyed && !res.writableFinished && (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new FleetError('ClientClosed', 'client closed the request');
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
