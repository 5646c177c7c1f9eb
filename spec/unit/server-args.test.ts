// The server's start read without yargs: only the plain forms of a start; anything else is yargs's.
import { plainServerStart } from '../../src/cli/server-args';

test('a start with -c, -E (repeated) and --agent-mode, with or without the run command', () => {
  expect(plainServerStart([])).toEqual({ agentMode: false });
  expect(plainServerStart(['run'])).toEqual({ agentMode: false });
  expect(plainServerStart(['-c', 'fleet-server.yml', '-E', 'path.data=/x', '--E', 'logging.level=debug'])).toEqual({
    agentMode: false, config: 'fleet-server.yml', E: ['path.data=/x', 'logging.level=debug'],
  });
  expect(plainServerStart(['run', '--agent-mode', '--config', '/etc/fleet.yml'])).toEqual({ agentMode: true, config: '/etc/fleet.yml' });
  // As Go's pflag: attached forms of -E, and the last -c wins.
  expect(plainServerStart(['-Epath.data=/x', '-E=logging.level=debug', '-c', 'a.yml', '-c', 'b.yml'])).toEqual({
    agentMode: false, config: 'b.yml', E: ['path.data=/x', 'logging.level=debug'],
  });
});

test('anything else is left to yargs: commands, help, unknown options, other forms, repeats, missing values', () => {
  for (const args of [
    ['policy', 'list'], ['--help'], ['-h'], ['--version'], ['--json'], ['--foo'],
    ['--config=/etc/fleet.yml'], ['-E'], ['-E', '--agent-mode'], ['-E='], ['-E-x'],
    ['--agent-mode', '--agent-mode'], ['-E', 'a=b', 'run'], ['run', 'run'], ['--agent-mode=false'],
    // An empty file name is refused there (flagWithoutValue), not read as none.
    ['-c', ''], ['-c', '', '-E', 'a=b'],
  ]) expect(plainServerStart(args)).toBeUndefined();
});
