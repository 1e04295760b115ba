/** What the unit tests of bad input ask: `fn` throws an error of class `cls`, returned for its message to be checked. */
import { expect } from 'chai';

export function refusedWith<E extends Error>(cls: new (...args: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(cls);
    return err as E;
  }
  throw new Error(`expected a ${cls.name}, but nothing was thrown`);
}
