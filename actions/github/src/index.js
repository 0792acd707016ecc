// Entry point bundled into dist/index.js; the runner runs it with node.
import { run } from './main.js';

await run();
