// mailauth ships no types for its DKIM body hasher; this is the part Mailward uses.
declare module 'mailauth/lib/dkim/body/relaxed.js' {
  export class RelaxedHash {
    constructor(algorithm: string, maxBodyLength: number | undefined);
    update(chunk: Buffer | null, final?: boolean): void;
    digest(encoding: 'base64'): string;
  }
}
