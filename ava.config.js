// Tests are TypeScript compiled by `npm run pretest` (tsc -p tsconfig.test.json) into .build/;
// AVA runs the compiled JavaScript, so the code under test is exactly what ships in dist/.
export default {
  files: ['.build/test/**/*.test.js'],
  timeout: '120s',
  concurrency: 2,
  serial: false,
  verbose: true,
};
