// What a fleet call ended with, for tests: 'ok', or the FleetError's code (anything else is rethrown).
import { isFleetError } from '../../src/fleet/errors';

export async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isFleetError(err)) return err.code;
    throw err;
  }
  return 'ok';
}
