/**
 * (Lives in src/gpu because RemoteGpu speaks it and imports go downward; the device host in src/actors answers it.)
 *
 * The wire format between a RemoteGpu (an actor) and the device host, over one MessagePort per actor.
 *
 * Hot path: the actor records Gpu calls into a command list of u32 words and posts it as one transferred
 * ArrayBuffer (plus, rarely, new kernel sources and large write payloads). Ids are chosen so that nothing in a
 * list needs an answer: kernel and recording ids are the actor's own; buffer ids come back from createBuffer,
 * which is awaited anyway. Requests that must be answered (read, sync, createBuffer, handle export/open) carry a
 * request id inside the same list, so they stay ordered with the actor's other commands, and the host replies
 * with a `ReplyMessage`.
 */
import {
  ActorDisconnectedError,
  ActorOutOfMemoryError,
  GpuDeviceLostError,
  GpuOutOfMemoryError,
  GpuValidationError,
  HandleDeviceMismatchError,
  InvalidInputError,
  StaleHandleError,
  TandemError,
} from '../errors.ts';
import type { GpuCaps } from './device.ts';

/** Operation codes of a command list. Each is followed by the words listed. */
/**
 * A dispatch body whose kernel id is this is an all-reduce collective (tensor parallelism), not a kernel:
 * x = buffer id, y = elements, z = dtype (0 f32, 1 f16), no params, no bindings. Dispatch form lets it sit
 * inside recordings between the dispatches it orders.
 */
export const ALL_REDUCE_KERNEL = 0xfffffffe;

export const Op = {
  /** bufferId, byteOffset(2), byteLength(2), inline: wordCount then words | blob: 0xffffffff then blob index */
  Write: 1,
  /** kernelId, x, y, z, paramWords, ...params, bindings, (bufferId, offset, size or NONE) per binding */
  Dispatch: 2,
  /** srcId, srcOffset(2), dstId, dstOffset(2), size(2) */
  Copy: 3,
  /** recordingId */
  Replay: 4,
  Flush: 5,
  /** bufferId */
  Destroy: 6,
  /** recordingId */
  ReleaseRecording: 7,
  /** recordingId, dispatchCount, then that many Dispatch bodies (without the opcode) */
  DefineRecording: 8,
  /** requestId, bufferId, byteOffset(2), byteLength(2) */
  Read: 9,
  /** requestId */
  Sync: 10,
  /** requestId, size(2), extra index (label) */
  CreateBuffer: 11,
  /** requestId, extra index (ExportRequest[]) */
  Export: 12,
  /** requestId, extra index (BufferHandle[]): answered with one OpenedView each */
  Open: 13,
  /** requestId: answered as soon as the host has run everything before it (not waiting for the GPU) */
  Ping: 14,
  /** requestId, parentId, byteOffset(2), byteLength(2), extra index (label): answered with an OpenedView */
  SubBuffer: 15,
} as const;

/** "No value" for an optional binding size. */
export const NONE = 0xffffffff;
/** Writes at least this large travel as their own transferred ArrayBuffer instead of inline words. */
export const BLOB_THRESHOLD = 64 * 1024;

export interface KernelDef {
  id: number;
  key: string;
  code: string;
  entryPoint?: string;
}

/** Actor → host. */
export interface CommandMessage {
  t: 'cmd';
  words: ArrayBuffer;
  length: number;
  /** Scheduling cost of the list (dispatches, replayed dispatches, copies, writes), for the fair queue. */
  cost: number;
  /** Dispatches in the list (replayed ones included): a list without any is copies and writes only. */
  dispatches?: number;
  kernels?: KernelDef[];
  blobs?: ArrayBuffer[];
  extras?: unknown[];
}
export interface ByeMessage {
  t: 'bye';
}
/** Actor → host: "still here", sent every WelcomeMessage.heartbeatMs while the actor has nothing else to send. */
export interface AliveMessage {
  t: 'alive';
}
export type ClientMessage = CommandMessage | ByeMessage | AliveMessage;

/** Host → actor: the first message on a new port. */
export interface WelcomeMessage {
  t: 'welcome';
  clientId: number;
  actorId: string;
  virtualGpuUuid: string;
  memoryBudgetBytes: number;
  caps: GpuCaps;
  /** How often to say it is alive when idle (ms); the host detaches actors silent for much longer. */
  heartbeatMs?: number;
}
export interface ReplyMessage {
  t: 'reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: SerializedError;
}
/** Host → actor: the host detached this actor (it was terminated, or the host shut down). */
export interface ClosedMessage {
  t: 'closed';
  reason: string;
}
export type HostMessage = WelcomeMessage | ReplyMessage | ClosedMessage;

/** What an actor asks to export: a byte range of one of its own buffers, described as a tensor. */
export interface ExportRequest {
  bufferId: number;
  byteOffset: number;
  byteLength: number;
  dtype: string;
  shape: number[];
}

/**
 * A serialisable buffer handle: what `reduce_tensor` gives in vLLM's colocate example. Valid only on the
 * virtual GPU it came from and only while its owner keeps the buffer (same generation).
 */
export interface BufferHandle {
  virtualGpuUuid: string;
  bufferId: number;
  byteOffset: number;
  byteLength: number;
  dtype: string;
  shape: number[];
  generation: number;
  /** The owning actor's id. */
  owner: string;
}

/** What openHandle gets back: the id and size of a view buffer in the opener's namespace. */
export interface OpenedView {
  id: number;
  size: number;
  label: string;
}

export interface SerializedError {
  name: string;
  message: string;
  fields?: Record<string, unknown>;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof ActorOutOfMemoryError) {
    const { actorId, budgetBytes, inUseBytes, requestedBytes } = e;
    return { name: e.name, message: e.message, fields: { actorId, budgetBytes, inUseBytes, requestedBytes } };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

const ERROR_CLASSES: Record<string, new (message: string) => TandemError> = {
  GpuOutOfMemoryError,
  GpuValidationError,
  GpuDeviceLostError,
  HandleDeviceMismatchError,
  StaleHandleError,
  ActorDisconnectedError,
  InvalidInputError,
};

/** Rebuild a typed error on the actor's side, so callers catch by class as they would in-process. */
export function deserializeError(s: SerializedError): Error {
  if (s.name === 'ActorOutOfMemoryError' && s.fields) {
    const err = new ActorOutOfMemoryError(s.fields as unknown as ConstructorParameters<typeof ActorOutOfMemoryError>[0]);
    err.message = s.message;
    return err;
  }
  const cls = ERROR_CLASSES[s.name];
  if (cls) return new cls(s.message);
  const err = new GpuValidationError(`${s.name} in the device host: ${s.message}`);
  return err;
}

/** A growable list of u32 words, handed over (and detached) by `take()`. */
export class WordWriter {
  private words: Uint32Array;
  length = 0;

  constructor(initialWords = 1024) {
    this.words = new Uint32Array(initialWords);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.words.length) return;
    let cap = this.words.length * 2;
    while (cap < this.length + n) cap *= 2;
    const grown = new Uint32Array(cap);
    grown.set(this.words.subarray(0, this.length));
    this.words = grown;
  }

  u32(v: number): void {
    this.reserve(1);
    this.words[this.length++] = v;
  }

  /** A byte count or offset that may exceed 2^32: low word, high word. */
  big(v: number): void {
    this.reserve(2);
    this.words[this.length++] = v >>> 0;
    this.words[this.length++] = Math.floor(v / 0x100000000);
  }

  append(src: Uint32Array): void {
    this.reserve(src.length);
    this.words.set(src, this.length);
    this.length += src.length;
  }

  /** Bytes, zero-padded to whole words. */
  bytes(data: ArrayBufferView): void {
    const n = Math.ceil(data.byteLength / 4);
    this.reserve(n);
    const dst = new Uint8Array(this.words.buffer, this.length * 4, n * 4);
    dst.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    dst.fill(0, data.byteLength);
    this.length += n;
  }

  view(): Uint32Array {
    return this.words.subarray(0, this.length);
  }

  /** The words so far as one transferable ArrayBuffer; the writer starts over empty. */
  take(): { buffer: ArrayBuffer; length: number } {
    const out = { buffer: this.words.buffer as ArrayBuffer, length: this.length };
    this.words = new Uint32Array(Math.max(256, Math.min(this.words.length, 1 << 16)));
    this.length = 0;
    return out;
  }
}

/** Reads a command list word by word. */
export class WordReader {
  pos = 0;
  constructor(readonly words: Uint32Array) {}
  u32(): number {
    return this.words[this.pos++];
  }
  big(): number {
    const lo = this.words[this.pos++];
    const hi = this.words[this.pos++];
    return hi * 0x100000000 + lo;
  }
  done(): boolean {
    return this.pos >= this.words.length;
  }
}

export interface WelcomeInfo {
  clientId: number;
  actorId: string;
  virtualGpuUuid: string;
  memoryBudgetBytes: number;
  caps: GpuCaps;
  heartbeatMs?: number;
}
