// An ordinary Vite config: nothing Tandem-specific is needed to bundle it.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  build: { target: 'es2022', chunkSizeWarningLimit: 2500 },
  server: { host: 'localhost' }, // WebGPU needs a secure context: https or http://localhost
});
