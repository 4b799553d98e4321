using Peft.Checkpoints;
using Peft.Models.Bert;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Bert;

[Collection(TinyBert.Collection)]
public sealed class BertModelTests
{
    [Fact]
    public void StateDictNamesAreTransformersBertForSequenceClassificationKeys()
    {
        using var model = TinyBert.Create(1);
        var names = model.state_dict().Keys.ToList();
        var expected = new List<string>
        {
            "bert.embeddings.word_embeddings.weight",
            "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight",
            "bert.embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.bias",
        };
        for (int i = 0; i < 2; i++)
        {
            string p = $"bert.encoder.layer.{i}.";
            foreach (string m in new[]
            {
                "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm",
            })
            {
                expected.Add(p + m + ".weight");
                expected.Add(p + m + ".bias");
            }
        }

        expected.AddRange(new[] { "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias" });
        Assert.Equal(expected.OrderBy(n => n, StringComparer.Ordinal), names.OrderBy(n => n, StringComparer.Ordinal));
        Assert.Equal(new long[] { 48, 32 }, model.state_dict()["bert.encoder.layer.0.intermediate.dense.weight"].shape);
        Assert.Equal(new long[] { 2, 32 }, model.state_dict()["classifier.weight"].shape);

        // The model declares no adapter; PEFT's defaults for BERT (query and value) are one line.
        Assert.Empty(model.AdapterNames());
        model.ApplyTargets(new PeftTargets(BertTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        Assert.Equal(names, model.state_dict().Keys.Where(n => !n.Contains(".default.", StringComparison.Ordinal)));
        var adapters = model.state_dict().Keys.Where(n => n.Contains(".default.", StringComparison.Ordinal)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var expectedAdapters = new[] { 0, 1 }
            .SelectMany(i => new[] { "query", "value" }.SelectMany(m => new[] { "lora_A", "lora_B" }.Select(ab => $"bert.encoder.layer.{i}.attention.self.{m}.default.{ab}.weight")))
            .OrderBy(n => n, StringComparer.Ordinal);
        Assert.Equal(expectedAdapters, adapters);
        Assert.Equal(new long[] { 8, 32 }, model.state_dict()["bert.encoder.layer.0.attention.self.query.default.lora_A.weight"].shape);

        // Trainable: the four adapters per layer and the [Trainable] classifier, nothing else.
        var trainable = model.TrainableParameters().ToList();
        Assert.Equal(2 * 2 * 8 * (32 + 32) + (32 * 2 + 2), trainable.Sum(p => p.numel()));
        var trainableNames = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainableNames, n => Assert.True(n.Contains(".default.lora_", StringComparison.Ordinal) || n.StartsWith("classifier.", StringComparison.Ordinal), n));
        Assert.Contains("classifier.weight", trainableNames);
    }

    [Fact]
    public void ConfigRoundTripsThroughConfigJson()
    {
        var config = TinyBert.Config() with { NumLabels = 3, ClassifierDropout = 0.2 };
        var hf = HfConfig.Parse(config.ToHf().ToJsonString());
        Assert.Equal("bert", hf.ModelType);
        Assert.Equal(config, BertConfig.FromHf(hf));

        // transformers writes no num_labels: it is the size of id2label, 2 when absent.
        Assert.Equal(3, ((System.Text.Json.Nodes.JsonObject)hf.Json["id2label"]!).Count);
        hf.Json.Remove("id2label");
        Assert.Equal(2, BertConfig.FromHf(hf).NumLabels);
        hf.Json.Remove("classifier_dropout");
        Assert.Equal(0.0, BertConfig.FromHf(hf).ClassifierDropoutProb);

        hf.Json["hidden_act"] = "relu";
        Assert.Contains("relu", Assert.Throws<CheckpointFormatException>(() => BertConfig.FromHf(hf)).Message);
        hf.Json["hidden_act"] = "gelu";
        hf.Json.Remove("num_attention_heads");
        Assert.Contains("num_attention_heads", Assert.Throws<CheckpointFormatException>(() => BertConfig.FromHf(hf)).Message);
    }

    [Fact]
    public void PaddedBatchGivesEachRowTheLogitsOfItsUnpaddedSequence()
    {
        using var model = TinyBert.Create(2);
        using var _ = no_grad();
        int[] lengths = { 9, 5, 2 };
        const int time = 9;
        var rows = lengths.Select((n, i) => TinyBert.RandomIds(10 + i, 1, n)).ToArray();
        var ids = zeros(lengths.Length, time, dtype: ScalarType.Int64);
        var mask = zeros(lengths.Length, time, dtype: ScalarType.Int64);
        for (int i = 0; i < lengths.Length; i++)
        {
            ids[i, ..lengths[i]] = rows[i][0];
            mask[i, ..lengths[i]] = 1;
            // Padding is not token 0 only: use garbage ids so the mask, not the pad embedding, must hide them.
            if (lengths[i] < time) ids[i, lengths[i]..] = (TinyBert.RandomIds(50 + i, 1, time - lengths[i])[0]);
        }

        var batched = model.Forward(ids, mask);
        for (int i = 0; i < lengths.Length; i++)
        {
            var alone = model.call(rows[i]);
            double diff = (batched[i] - alone[0]).abs().max().item<float>();
            Assert.True(diff <= 1e-5, $"row {i} (length {lengths[i]}): max |padded - unpadded| = {diff}");
        }

        // Without the mask the padded rows see the padding and change.
        var unmasked = model.call(ids);
        Assert.False(unmasked[1].allclose(batched[1], rtol: 0, atol: 1e-4), "the mask made no difference");
        Assert.True(unmasked[0].allclose(batched[0], rtol: 0, atol: 1e-5), "an unpadded row changed with an all-ones mask");
    }

    [Fact]
    public void TokenTypesChangeTheLogits()
    {
        using var model = TinyBert.Create(3);
        using var _ = no_grad();
        var ids = TinyBert.RandomIds(4, 2, 6);
        var types = zeros_like(ids);
        types[.., 3..] = 1;
        Assert.True(TinyBert.BitwiseEqual(model.call(ids), model.Forward(ids, null, zeros_like(ids))));
        Assert.False(model.Forward(ids, null, types).allclose(model.call(ids)));
    }

    [Fact]
    public void HfCheckpointRoundTripGivesIdenticalLogits()
    {
        string dir = TinyBert.TempDir("ckpt");
        try
        {
            using var source = TinyBert.CreateWithLoRA(13);
            HfCheckpoint.Save(source, dir, source.Config.ToHf());
            using (var written = HfCheckpoint.Open(dir))
            {
                Assert.Contains("bert.encoder.layer.1.attention.self.query.weight", written.TensorNames);
                Assert.DoesNotContain(written.TensorNames, n => n.Contains("lora", StringComparison.Ordinal));
            }

            manual_seed(999);
            using var loaded = BertForSequenceClassification.FromPretrained(dir);
            Assert.Equal(source.Config, loaded.Config);
            var ids = TinyBert.RandomIds(14, 3, 7);
            var mask = ones_like(ids);
            mask[2, 4..] = 0;
            using var _ = no_grad();
            var expected = source.Forward(ids, mask);
            var actual = loaded.Forward(ids, mask);
            Assert.True(TinyBert.BitwiseEqual(expected, actual), "logits differ after the checkpoint round trip");

            using var fresh = TinyBert.Create(15);
            Assert.False(fresh.Forward(ids, mask).allclose(expected), "a differently seeded model has the same logits");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
