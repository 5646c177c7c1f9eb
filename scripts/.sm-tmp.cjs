const { TraceMap, originalPositionFor } = require('@jridgewell/trace-mapping');
const map = new TraceMap(require('fs').readFileSync(process.argv[2], 'utf8'));
for (const a of process.argv.slice(3)) { const [l, c] = a.split(':').map(Number); const o = originalPositionFor(map, { line: l + 1, column: c }); console.log(a, '->', o.source, o.line, o.column, o.name); }
