import { expect } from 'chai';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { findExecutable, findOnPath } from '../../lib/which';

describe('finding a program without running it', () => {
  let dir: string;
  let savedPath: string | undefined;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'twill-which-'));
    for (const d of ['a', 'b', 'c']) mkdirSync(path.join(dir, d));
    writeFileSync(path.join(dir, 'a', 'nft'), '#!/bin/sh\n'); // not executable
    writeFileSync(path.join(dir, 'b', 'nft'), '#!/bin/sh\n');
    chmodSync(path.join(dir, 'b', 'nft'), 0o755);
    mkdirSync(path.join(dir, 'a', 'bird')); // a directory, not a program
    writeFileSync(path.join(dir, 'c', 'bird'), '#!/bin/sh\n');
    chmodSync(path.join(dir, 'c', 'bird'), 0o755);
    savedPath = process.env.PATH;
  });
  after(() => {
    process.env.PATH = savedPath;
    rmSync(dir, { recursive: true, force: true });
  });

  it('skips files that are not executable and directories, in PATH order', () => {
    expect(findExecutable('nft', [path.join(dir, 'a'), path.join(dir, 'b')])).to.equal(path.join(dir, 'b', 'nft'));
    expect(findExecutable('bird', [path.join(dir, 'a')])).to.equal(undefined);
  });

  it('looks on the PATH, then in the extra directories', () => {
    process.env.PATH = [path.join(dir, 'a'), path.join(dir, 'b')].join(':');
    expect(findOnPath('nft')).to.equal(path.join(dir, 'b', 'nft'));
    expect(findOnPath('bird')).to.equal(undefined);
    expect(findOnPath('bird', [path.join(dir, 'c')])).to.equal(path.join(dir, 'c', 'bird'));
  });
});
