/** @type {import('aegir').PartialOptions} */
export default {
  build: {
    bundle: false
  },
  lint: {
    // aegir's defaults cover src/ and test/; accord's sources live elsewhere
    files: [
      '*.{js,ts}',
      'node/**/*.ts',
      'protocols/**/*.ts',
      'identity/**/*.ts',
      'scripts/**/*.ts',
      'test/**/*.ts'
    ]
  },
  test: {
    target: ['node']
  },
  dependencyCheck: {
    productionIgnorePatterns: ['scripts/**', 'test/**']
  }
}
