// Sub-buffers (Gpu.subBuffer): a byte range of a buffer used as a buffer of its own, allocating nothing — what
// the weight arenas (src/model/weight_arena.ts) stand on. The same behaviour in-process (LocalGpu) and through the
// device host (RemoteGpu): writes, reads, copies and dispatch bindings address the parent's bytes; the range is
// checked; destroying a sub-buffer frees nothing; destroying the parent ends its sub-buffers; through the host a
// sub-buffer exports as a handle to its range of the parent.
import { DeviceHost } from '../../src/actors/device_host.ts';
import { openHandle } from '../../src/actors/handles.ts';
import { GpuValidationError, StaleHandleError } from '../../src/errors.ts';
import type { Gpu } from '../../src/gpu/gpu.ts';
import { rootOf } from '../../src/gpu/gpu.ts';
import { LocalGpu } from '../../src/gpu/local.ts';
import { RemoteGpu } from '../../src/gpu/remote.ts';
import { AFFINE, assertEquals, assertRejects, assertThrows } from './helpers.ts';

const opts = { sanitizeResources: false, sanitizeOps: false };
const f32 = (ab: ArrayBuffer) => Array.from(new Float32Array(ab));

/** The behaviour both implementations share; returns the parent and a sub-buffer for implementation-specific checks. */
async function exercise(gpu: Gpu, what: string) {
  // Two parents: WebGPU tracks usage per buffer, so one dispatch may not bind ranges of one parent both
  // read-only and read-write (a weight arena is only read by the kernels that use it).
  const parent = await gpu.createBuffer(4096, `${what}.arena`);
  const outParent = await gpu.createBuffer(4096, `${what}.out`);
  const bytesBefore = gpu.stats().bytesAllocated, buffersBefore = gpu.stats().buffers;
  const a = await gpu.subBuffer(parent, 256, 512, 'a'); // floats 64..191 of the parent
  const b = await gpu.subBuffer(outParent, 1024, 512, 'b'); // floats 256..383 of the other
  assertEquals([a.size, a.parent?.id, a.parentOffset], [512, parent.id, 256]);
  assertEquals(rootOf(b), { root: outParent, offset: 1024 });
  assertEquals([gpu.stats().bytesAllocated, gpu.stats().buffers], [bytesBefore, buffersBefore], `${what}: sub-buffers allocate nothing`);

  // A write through the sub-buffer lands at its offset in the parent; a read through it sees the same bytes.
  gpu.write(a, Float32Array.from({ length: 128 }, (_, i) => i));
  const whole = new Float32Array(await gpu.read(parent));
  assertEquals(Array.from(whole.subarray(64, 192)), Array.from({ length: 128 }, (_, i) => i), `${what}: write via sub-buffer`);
  assertEquals(whole[63], 0, `${what}: the byte before the range is untouched`);
  assertEquals(whole[192], 0, `${what}: the byte after the range is untouched`);
  assertEquals(f32(await gpu.read(a, 8, 8)), [2, 3], `${what}: a read at an offset inside the sub-buffer`);

  // Bound whole (default size = its own range) and at an offset inside it.
  const k = gpu.kernel(AFFINE);
  gpu.dispatch(k, [a, b], null, [2]);
  assertEquals(f32(await gpu.read(b)), Array.from({ length: 128 }, (_, i) => i * 2 + 1), `${what}: dispatch over sub-buffers`);
  gpu.dispatch(k, [{ buffer: a, offset: 256, size: 256 }, { buffer: b, offset: 256, size: 256 }], null, [1]);
  assertEquals(f32(await gpu.read(b, 256, 16)), [129, 131, 133, 135], `${what}: bindings at offsets inside sub-buffers`);
  // Copies between sub-buffers, and a nested sub-buffer.
  gpu.copy(a, 0, b, 0, 16);
  const nested = await gpu.subBuffer(b, 256, 256, 'b.tail');
  assertEquals(rootOf(nested), { root: outParent, offset: 1280 });
  assertEquals(f32(await gpu.read(nested, 0, 8)), [129, 131], `${what}: a sub-buffer of a sub-buffer`);
  assertEquals(f32(await gpu.read(b, 0, 16)), [0, 1, 2, 3], `${what}: copy between sub-buffers`);

  // The range is checked: inside the parent, aligned for bindings.
  await assertRejects(() => gpu.subBuffer(parent, 100, 64, 'misaligned'), RangeError, 'alignment');
  await assertRejects(() => gpu.subBuffer(parent, 3840, 512, 'past the end'), RangeError, 'past the end');
  return { parent, outParent, a, b };
}

Deno.test('sub-buffers in-process (LocalGpu): views of a parent buffer; destroying the parent ends them', opts, async () => {
  const gpu = await LocalGpu.create();
  const { parent, outParent, a, b } = await exercise(gpu, 'local');
  // A copy past a sub-buffer's end would write its neighbour: refused.
  assertThrows(() => gpu.copy(a, 0, b, 256, 512), GpuValidationError, 'overflows "b"');
  gpu.destroyBuffer(a); // frees nothing; the parent and b are unaffected
  assertEquals(f32(await gpu.read(b, 0, 8)), [0, 1]);
  gpu.destroyBuffer(parent);
  gpu.destroyBuffer(outParent);
  await assertRejects(() => gpu.read(b), GpuValidationError, 'destroyed');
  assertEquals(gpu.stats().buffers, 0);
  gpu.destroy();
});

Deno.test('sub-buffers through the device host (RemoteGpu): same behaviour; exported as a handle to the parent range', opts, async () => {
  const host = await DeviceHost.create();
  const owner = await RemoteGpu.connect(host.attach({ actorId: 'arena-owner', virtualGpuUuid: 'GPU-0' }).port);
  const other = await RemoteGpu.connect(host.attach({ actorId: 'arena-reader', virtualGpuUuid: 'GPU-0' }).port);
  const { outParent, b } = await exercise(owner, 'remote');
  assertEquals(host.stats().clients.find((c) => c.actorId === 'arena-owner')!.bytesInUse, 8192, 'the budget counts the parents only');

  const [h] = await owner.exportRanges([{ bufferId: b.id, byteOffset: 16, byteLength: 64, dtype: 'f32', shape: [16] }]);
  assertEquals([h.bufferId, h.byteOffset, h.byteLength], [outParent.id, 1040, 64], 'the handle names the parent range');
  const view = await openHandle(other, h);
  assertEquals(f32(await other.read(view, 0, 8)), [9, 11], 'the reader sees the parent bytes (b[4], b[5] = 4·2+1, 5·2+1)');
  // Only the owner cuts sub-buffers, and only from its own memory.
  await assertRejects(() => other.subBuffer(view, 0, 16, 'not mine'), Error, 'only cut sub-buffers');
  owner.destroyBuffer(outParent);
  await assertRejects(() => owner.read(b), StaleHandleError, 'released');
  await assertRejects(() => other.read(view), StaleHandleError);
  owner.destroy();
  other.destroy();
  host.destroy();
});
