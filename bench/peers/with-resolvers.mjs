// Promise.withResolvers (Node >= 22) for PostGraphile 5 on Node 20. Preloaded into the PostGraphile
// benchmark process only (`node --import ./bench/peers/with-resolvers.mjs …`), never into the gateway.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
