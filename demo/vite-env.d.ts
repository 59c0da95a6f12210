// Vite's import suffixes (`?worker&url`, `?url`) as the demo uses them (worker/actor_workers.ts).
/// <reference types="vite/client" />
