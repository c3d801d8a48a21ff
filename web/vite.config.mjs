// One config, two apps: `vite build --mode console` (the manager console, an HTML app) and
// `vite build --mode widget` (the chat widget, ONE self-contained IIFE file plus demo.html).
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

// `npm run dev`: the console's API calls go to a running gateway web listener.
const consoleOrigin = process.env.INBOX_CONSOLE_URL || 'http://127.0.0.1:18482';

export default defineConfig(({ mode }) => {
  if (mode === 'widget') {
    return {
      plugins: [preact()],
      // web/widget/ holds demo.html: copied as is next to widget.js.
      publicDir: here('./widget'),
      build: {
        outDir: here('./dist/widget'),
        emptyOutDir: true,
        target: 'es2020',
        sourcemap: false,
        lib: {
          entry: here('./src/widget/index.ts'),
          name: 'InboxWidget',
          formats: ['iife'],
          fileName: () => 'widget.js',
        },
      },
    };
  }
  return {
    root: here('./console'),
    base: '/',
    plugins: [preact()],
    publicDir: false,
    build: {
      outDir: here('./dist/console'),
      emptyOutDir: true,
      target: 'es2020',
      assetsDir: 'assets',
      sourcemap: false,
    },
    server: {
      fs: { allow: [here('.')] },
      proxy: {
        '/inbox.v1.': { target: consoleOrigin, changeOrigin: true },
        '/dev/token': { target: consoleOrigin, changeOrigin: true },
      },
    },
  };
});
