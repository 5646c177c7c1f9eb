// `npm run es-double -- --port P --service-token T --data DIR`: the Elasticsearch double on its own, so
// Fleet Server can run in Elasticsearch mode on a machine without Elasticsearch.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EsDouble } from './server';

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .option('host', { type: 'string', default: '127.0.0.1' })
    .option('port', { type: 'number', default: 9200 })
    .option('service-token', { type: 'string', describe: 'the fleet-server service token to accept (default: a new one, printed)' })
    .option('data', { type: 'string', describe: 'keep the data in this directory (default: in memory)' })
    .option('refresh-interval', { type: 'number', default: 1000, describe: 'index.refresh_interval in ms' })
    .strict().parse();
  const double = await new EsDouble({
    host: argv.host, port: argv.port, serviceToken: argv['service-token'], dataDir: argv.data, refreshIntervalMs: argv['refresh-interval'],
  }).start();
  process.stdout.write(`Elasticsearch double listening on ${double.url}\nservice token: ${double.serviceToken}\n`);
  const stop = (): void => void double.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
