/** @type {import('aegir').PartialOptions} */
export default {
  build: {
    bundle: false
  },
  test: {
    target: ['node']
  },
  dependencyCheck: {
    productionIgnorePatterns: ['scripts/**', 'test/**']
  }
}
