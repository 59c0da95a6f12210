/// <reference lib="webworker" />
// The engine worker: owns the GPU device and the LLM; the page talks to it through Comlink (protocol.ts EngineApi).
import * as Comlink from 'comlink';
import { DemoEngine } from './engine_host.ts';

Comlink.expose(new DemoEngine());
