using Peft.Checkpoints;
using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Reliability;

/// <summary>
/// FromPretrained checks config.json's sizes against the weights before it allocates a model, from shapes each family
/// computes without building it: those shapes must be exactly the base state dict of the model it would build.
/// </summary>
public sealed class ExpectedTensorsTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void Llama_expected_tensors_are_the_models_base_state_dict(bool tie, bool qwen2)
    {
        var config = TinyLlama.Config(tie) with { QkvBias = qwen2, MlpBias = !qwen2 && tie, OutputBias = false };
        using var model = new LlamaForCausalLM(config);
        AssertSame(model, config.ExpectedTensors());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Gpt2_expected_tensors_are_the_models_base_state_dict(bool tie)
    {
        var config = TinyGpt2.Config(tie);
        using var model = new Gpt2LMHeadModel(config);
        AssertSame(model, config.ExpectedTensors());
    }

    [Fact]
    public void Bert_expected_tensors_are_the_models_base_state_dict()
    {
        var config = TinyBert.Config();
        using var model = new BertForSequenceClassification(config);
        AssertSame(model, config.ExpectedTensors());
    }

    [Fact]
    public void A_config_json_vocab_size_that_the_weights_do_not_have_fails_before_allocating()
    {
        var dir = TinyLlama.TempDir("expected-vocab");
        try
        {
            using (var model = TinyLlama.Create(3))
            {
                HfCheckpoint.Save(model, dir, model.Config.ToHf());
            }
            var config = HfConfig.Load(Path.Combine(dir, "config.json"));
            config.VocabSize = 2_000_000_000;
            config.Save(Path.Combine(dir, "config.json"));
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var e = Assert.Throws<CheckpointMismatchException>(() => LlamaForCausalLM.FromPretrained(dir));
            Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64 << 20);
            Assert.Contains("model.embed_tokens.weight", e.Message, StringComparison.Ordinal);
            Assert.Contains("vocab_size", e.Message, StringComparison.Ordinal);
            Assert.Contains(dir, e.Message, StringComparison.Ordinal);

            config.VocabSize = TinyLlama.Config().VocabSize;
            config.NumHiddenLayers = int.MaxValue;
            config.Save(Path.Combine(dir, "config.json"));
            var layers = Assert.Throws<CheckpointFormatException>(() => LlamaForCausalLM.FromPretrained(dir));
            Assert.Equal("num_hidden_layers", layers.Field);
            Assert.Equal(Path.Combine(dir, "config.json"), layers.FilePath);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void AssertSame(nn.Module model, IEnumerable<ExpectedTensor> expected)
    {
        var adapter = new HashSet<object>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        var adapterNames = model.named_parameters().Where(p => adapter.Contains(p.parameter)).Select(p => p.name).ToHashSet();
        var actual = model.state_dict().Where(p => !adapterNames.Contains(p.Key))
            .ToDictionary(p => p.Key, p => string.Join(",", p.Value.shape));
        var predicted = expected.ToDictionary(e => e.Name, e => string.Join(",", e.Shape));
        Assert.Equal(actual.OrderBy(p => p.Key, StringComparer.Ordinal), predicted.OrderBy(p => p.Key, StringComparer.Ordinal));
    }
}
