import { expect } from 'chai';
import { LastResult } from '../../lib/last-result';

describe('LastResult: a result reused while its inputs stand', () => {
  it('computes again only when an input is another object, or an array input holds another element', () => {
    const memo = new LastResult<string>();
    let calls = 0;
    const a = { n: 1 };
    const b = { n: 2 };
    const get = (inputs: unknown[]) => memo.get(inputs, () => `result ${++calls}`);
    expect(get([a, [a, b], 'x'])).to.equal('result 1');
    expect(get([a, [a, b], 'x']), 'a new array of the same elements').to.equal('result 1');
    expect(get([a, [a, { n: 2 }], 'x']), 'an equal but different element').to.equal('result 2');
    expect(get([a, [a, { n: 2 }], 'x']), 'that new element is not the one remembered either').to.equal('result 3');
    expect(get([a, [a], 'x']), 'one element fewer').to.equal('result 4');
    expect(get([a, [a], 'y']), 'a different string').to.equal('result 5');
    expect(get([a, [a], 'y'])).to.equal('result 5');
    memo.clear();
    expect(get([a, [a], 'y']), 'after clear').to.equal('result 6');
  });

  it('remembers an undefined result as a result', () => {
    const memo = new LastResult<undefined>();
    let calls = 0;
    memo.get([1], () => { calls++; return undefined; });
    memo.get([1], () => { calls++; return undefined; });
    expect(calls).to.equal(1);
  });
});
