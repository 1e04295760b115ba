import { expect } from 'chai';
import { PassThrough } from 'stream';
import { createLogger, isoUtc } from '../../lib/observe/logger';

describe('logger', () => {
  it("writes each line's time as Date's toISOString does, across leap days, centuries and the millisecond", () => {
    const samples = [
      0, 1, 999, 86_399_999, 86_400_000,
      Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(2000, 2, 1), Date.UTC(1900, 1, 28, 12), Date.UTC(1900, 2, 1),
      Date.UTC(2100, 1, 28, 23, 59, 59, 999), Date.UTC(2100, 2, 1), Date.UTC(2024, 11, 31, 23, 59, 59, 999), Date.UTC(2026, 11, 6, 1, 2, 3, 4),
      Date.UTC(1969, 11, 31, 23, 59, 59, 999), Date.UTC(1600, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    ];
    // And a day of every month for 800 years, at an odd time of day.
    for (let d = Date.UTC(1800, 0, 1, 7, 8, 9, 10); d < Date.UTC(2600, 0, 1); d += 29 * 86_400_000 + 3_723_456) samples.push(d);
    for (const ms of samples) expect(isoUtc(ms), String(ms)).to.equal(new Date(ms).toISOString());
  });

  it('stamps text and JSON lines with the current UTC time', () => {
    for (const format of ['text', 'json'] as const) {
      const stream = new PassThrough();
      const before = Date.now();
      createLogger({ format, stream }).info('hello', { a: 1 });
      const after = Date.now();
      const line = String(stream.read());
      const stamp = format === 'json' ? (JSON.parse(line) as { timestamp: string }).timestamp : line.split(' ')[0];
      expect(stamp, line).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Date.parse(stamp)).to.be.within(before, after);
    }
  });
});
