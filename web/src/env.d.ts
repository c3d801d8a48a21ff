// Vite handles CSS imports (the console's stylesheet becomes an asset).
declare module '*.css';
