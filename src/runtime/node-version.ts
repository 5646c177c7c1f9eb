// The program needs Node 24 (package.json engines; the project pins it through the `node` package, and
// the single executable carries its own). Started by an older `node` — the shebang takes whichever is on
// PATH — it failed deep in loading with ERR_UNKNOWN_BUILTIN_MODULE for node:sqlite and a stack trace;
// it now says what is wrong in one line, before anything else loads (runtime/early-start.ts).

/** The oldest Node major version the program runs on. */
export const MIN_NODE_MAJOR = 24;

/** Why this Node cannot run the program, or undefined when it can. */
export function nodeVersionProblem(version: string = process.versions.node): string | undefined {
  const major = Number(version.split('.')[0]);
  if (major >= MIN_NODE_MAJOR) return undefined;
  return `fleet-server needs Node.js ${MIN_NODE_MAJOR} or later, and was started by Node.js ${version}: `
    + 'start it with `npm start` (the Node the project pins), the packaged executable, or a newer `node`';
}
