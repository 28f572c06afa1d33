import type { Readable, Writable } from 'node:stream';
import { type JSONRPCMessage, parseJSONRPCMessage, type Transport } from '@modelcontextprotocol/server';

/** JSON-RPC 2.0 section 5.1 error codes answered by the transport itself. */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

const NEWLINE = 0x0a;

type Options = { input: Readable; output: Writable; maxLineBytes: number };

/**
 * MCP stdio (MCP 2025-06-18 "stdio": one JSON-RPC message per line) with the
 * same size limit as a request body over HTTP. The SDK's StdioServerTransport
 * buffers up to 10 MB and, past that, closes the transport, so the process
 * exits 0 without a word; and it drops unparsable lines silently. Here a line
 * longer than `maxLineBytes` is never buffered whole: it is answered with
 * -32600 naming the limit and skipped up to its newline, a line that is not
 * JSON with -32700, one that is not JSON-RPC with -32600, and the session
 * goes on. The id of a refused line is unknown, so the answer's id is null
 * (JSON-RPC 2.0 section 5). The SDK's serveStdio takes it as its transport and
 * owns everything above the line (the era of the connection, server/discover).
 */
export class BoundedStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  private readonly input: Readable;
  private readonly output: Writable;
  private readonly maxLineBytes: number;
  private parts: Buffer[] = [];
  private size = 0;
  /** Inside a line already refused for its size: drop bytes up to the next newline. */
  private skipping = false;
  private closed = false;

  constructor({ input, output, maxLineBytes }: Options) {
    this.input = input;
    this.output = output;
    this.maxLineBytes = maxLineBytes;
  }

  private readonly onData = (chunk: Buffer | string) => {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let pos = 0;
    while (pos < buf.length) {
      const nl = buf.indexOf(NEWLINE, pos);
      const end = nl === -1 ? buf.length : nl;
      if (this.skipping) {
        if (nl !== -1) this.skipping = false;
      } else if (this.size + (end - pos) > this.maxLineBytes) {
        this.parts = [];
        this.size = 0;
        this.refuse(
          INVALID_REQUEST,
          `Invalid Request: a message may be at most ${this.maxLineBytes} bytes (the HTTP request body limit, MAILWARD_BODY_LIMIT_BYTES); this one was skipped.`,
        );
        this.skipping = nl === -1;
      } else if (nl === -1) {
        this.parts.push(buf.subarray(pos));
        this.size += buf.length - pos;
      } else {
        const line = this.parts.length === 0 ? buf.subarray(pos, nl) : Buffer.concat([...this.parts, buf.subarray(pos, nl)]);
        this.parts = [];
        this.size = 0;
        this.handleLine(line.toString('utf8'));
      }
      pos = nl === -1 ? buf.length : nl + 1;
    }
  };

  private readonly onError = (e: Error) => this.onerror?.(e);

  private handleLine(raw: string) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.refuse(PARSE_ERROR, 'Parse error: the line is not valid JSON.');
      return;
    }
    let message: JSONRPCMessage;
    try {
      message = parseJSONRPCMessage(value);
    } catch {
      const id = (value as { id?: unknown } | null)?.id;
      this.refuse(
        INVALID_REQUEST,
        'Invalid Request: not a JSON-RPC 2.0 message.',
        typeof id === 'string' || typeof id === 'number' ? id : null,
      );
      return;
    }
    this.onmessage?.(message);
  }

  private refuse(code: number, message: string, id: string | number | null = null) {
    this.write({ jsonrpc: '2.0', id, error: { code, message } }).catch(() => {});
  }

  private write(message: unknown) {
    return new Promise<void>((resolve) => {
      if (this.output.destroyed) return resolve();
      if (this.output.write(`${JSON.stringify(message)}\n`)) resolve();
      else this.output.once('drain', resolve);
    });
  }

  async start() {
    this.input.on('data', this.onData);
    this.input.on('error', this.onError);
  }

  send(message: JSONRPCMessage) {
    return this.write(message);
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    this.input.off('data', this.onData);
    this.input.off('error', this.onError);
    if (this.input.listenerCount('data') === 0) this.input.pause();
    this.parts = [];
    this.onclose?.();
  }
}
