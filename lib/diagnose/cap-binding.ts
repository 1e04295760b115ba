/** The part of the `cap` package's native binding twill uses (the package ships no types). */
export interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  close(): void;
  setMinBytes?(n: number): void;
  on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): this;
}

export interface CapModule {
  Cap: new () => CapHandle;
}
