// runtime/node-version.ts: an older Node is refused in one line, before the program loads.
import { MIN_NODE_MAJOR, nodeVersionProblem } from '../../src/runtime/node-version';

test('Node 24 and later run the program; older ones are named in one line', () => {
  expect(MIN_NODE_MAJOR).toBe(24);
  expect(nodeVersionProblem('24.0.0')).toBeUndefined();
  expect(nodeVersionProblem('25.1.2')).toBeUndefined();
  expect(nodeVersionProblem(process.versions.node)).toBeUndefined();
  const old = nodeVersionProblem('20.20.2');
  expect(old).toContain('Node.js 24 or later');
  expect(old).toContain('20.20.2');
  expect(old).not.toContain('\n');
});
