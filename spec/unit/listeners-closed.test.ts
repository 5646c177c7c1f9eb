// A cluster's stop: no worker answers its held polls until every worker has closed its listeners.
import { ListenersClosedBarrier, OTHERS_CLOSED_WAIT_MS } from '../../src/runtime/listeners-closed';

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

test('a worker stopped alone answers once the hold is over; one closing after the others were released, at once', () => {
  jest.useFakeTimers();
  try {
    const { b, told } = barrier();
    b.closed('alone');
    jest.advanceTimersByTime(OTHERS_CLOSED_WAIT_MS - 1);
    expect(told).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(told).toEqual(['alone']);
    b.begin(['w1']);
    b.closed('w1');
    b.closed('late');
    expect(told).toEqual(['alone', 'w1', 'late']);
  } finally {
    jest.useRealTimers();
  }
});

test('with no worker serving, there is nothing to wait for', () => {
  const { b, told } = barrier();
  b.begin([]);
  b.closed('starting');
  expect(told).toEqual(['starting']);
});

test('a group signal that reached a worker before the primary: it waits for the others like everyone', () => {
  jest.useFakeTimers();
  try {
    const { b, told } = barrier();
    b.closed('first'); // its handler ran first
    b.begin(['first', 'w1', 'w2']); // the primary's own stop, well within the hold
    expect(told).toEqual([]);
    b.closed('w1');
    jest.advanceTimersByTime(OTHERS_CLOSED_WAIT_MS); // the hold no longer applies
    expect(told).toEqual([]);
    b.closed('w2');
    expect(told.sort()).toEqual(['first', 'w1', 'w2']);
  } finally {
    jest.useRealTimers();
  }
});

test('a worker that was stopped alone before the whole stop began is not waited for', () => {
  jest.useFakeTimers();
  try {
    const { b, told } = barrier();
    b.closed('early');
    jest.advanceTimersByTime(OTHERS_CLOSED_WAIT_MS);
    expect(told).toEqual(['early']);
    b.begin(['early', 'w1']);
    b.closed('w1');
    expect(told).toEqual(['early', 'w1']);
  } finally {
    jest.useRealTimers();
  }
});

test('a held worker that exits is not told, and not waited for', () => {
  jest.useFakeTimers();
  try {
    const { b, told } = barrier();
    b.closed('held');
    b.gone('held');
    jest.advanceTimersByTime(OTHERS_CLOSED_WAIT_MS);
    b.begin(['w1']);
    b.closed('w1');
    expect(told).toEqual(['w1']);
  } finally {
    jest.useRealTimers();
  }
});
