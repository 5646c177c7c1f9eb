// A cluster's stop: no worker answers its held polls until every worker has closed its listeners.
import { ListenersClosedBarrier } from '../../src/runtime/listeners-closed';

function barrier(): { b: ListenersClosedBarrier<string>; told: string[] } {
  const told: string[] = [];
  return { b: new ListenersClosedBarrier<string>((w) => told.push(w)), told };
}

test('workers answer once the last one has closed its listeners, all at once', () => {
  const { b, told } = barrier();
  b.begin(['w1', 'w2', 'w3']);
  b.closed('w2');
  b.closed('w1');
  expect(told).toEqual([]);
  b.closed('w3');
  expect(told.sort()).toEqual(['w1', 'w2', 'w3']);
});

test('a worker that exits meanwhile is not waited for', () => {
  const { b, told } = barrier();
  b.begin(['w1', 'w2']);
  b.closed('w1');
  b.gone('w2');
  expect(told).toEqual(['w1']);
});

test('a worker stopped alone, or closing after the others were released, answers at once', () => {
  const { b, told } = barrier();
  b.closed('alone');
  expect(told).toEqual(['alone']);
  b.begin(['w1']);
  b.closed('w1');
  b.closed('late');
  expect(told).toEqual(['alone', 'w1', 'late']);
});

test('with no worker serving, there is nothing to wait for', () => {
  const { b, told } = barrier();
  b.begin([]);
  b.closed('starting');
  expect(told).toEqual(['starting']);
});

test('a worker that closed before the whole stop began is not waited for', () => {
  const { b, told } = barrier();
  b.closed('early');
  b.begin(['early', 'w1']);
  expect(told).toEqual(['early']);
  b.closed('w1');
  expect(told).toEqual(['early', 'w1']);
});
