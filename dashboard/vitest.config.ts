// Unit tests of the dashboard's pure modules (test/*.test.ts: the selector grammar, the charts'
// data merging). The browser tests in e2e/ run under Node's test
// runner instead (crates/pulsewire/tests/dashboard_browser.rs runs both).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
