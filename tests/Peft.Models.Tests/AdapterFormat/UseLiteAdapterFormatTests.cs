using Peft.Models.UseLite;
using Peft.Serialization;
using Sentiment;
using static Peft.Models.Tests.AdapterFormat.AdapterFormatSupport;
using static TorchSharp.torch;

namespace Peft.Models.Tests.AdapterFormat;

/// <summary>
/// USE-lite (random weights: the format does not depend on them) under the sentiment sample's classifier, which adds a
/// [Trainable] head: the sample's LoRA, LoKr and prompt-tuning methods, each applied by configuration targets (as the
/// sample registers them in SentimentMethods) and saved as a PEFT adapter with the head as modules_to_save, then reloaded
/// into a classifier without adapters (AdapterFiles.Load creates the adapter from the config, as PEFT's from_pretrained).
/// </summary>
public sealed class UseLiteAdapterFormatTests : IDisposable
{
    private static readonly string[] Projections = ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"];

    private readonly string _root = TempDir("uselite");
    private readonly List<IDisposable> _owned = new();

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string BasePath => Path.Combine(_root, "base.safetensors");

    private SentimentClassifier NewClassifier()
    {
        var encoder = new UseLiteEncoder();
        var classifier = new SentimentClassifier(encoder);
        _owned.Add(classifier);
        _owned.Add(encoder);
        return classifier;
    }

    /// <summary>The classifier with the sample's method <paramref name="method"/> applied (its adapter named "default").</summary>
    private SentimentClassifier WithMethod(string method)
    {
        var classifier = NewClassifier();
        classifier.ApplyTargets(SentimentMethods.Get(method).Targets!);
        return classifier;
    }

    /// <summary>Base weights saved first (untrained head included), then the method's adapter with random values and a moved head.</summary>
    private SentimentClassifier Trained(string method)
    {
        manual_seed(60);
        var classifier = NewClassifier();
        ModelWeights.Save(classifier, BasePath);
        classifier.ApplyTargets(SentimentMethods.Get(method).Targets!);
        RandomizeAdapters(classifier, 61);
        using (no_grad())
        {
            foreach (var p in classifier.HeadParameters()) p.add_(0.25);
        }
        return classifier;
    }

    /// <summary>A classifier with the base weights of <see cref="Trained"/> and no adapter.</summary>
    private SentimentClassifier Fresh()
    {
        var classifier = NewClassifier();
        ModelWeights.Load(classifier, BasePath);
        return classifier;
    }

    /// <summary>(in, out) of each adapted projection of layer <paramref name="layer"/>.</summary>
    private static IEnumerable<(string Name, long In, long Out)> Layers(int layer)
    {
        long input = UseLiteConfig.LayerInputDim(layer), hidden = UseLiteConfig.HiddenDim, ffn = UseLiteConfig.FeedForwardDim;
        yield return ("q_proj", input, input);
        yield return ("k_proj", input, input);
        yield return ("v_proj", input, input);
        yield return ("out_proj", input, hidden);
        yield return ("fc1", hidden, ffn);
        yield return ("fc2", ffn, hidden);
    }

    private static Dictionary<string, long[]> Head(string prefix) => new()
    {
        [prefix + "head.weight"] = [2, UseLiteConfig.HiddenDim],
        [prefix + "head.bias"] = [2],
    };

    /// <summary>PEFT's <c>factorization(dimension, factor=-1)</c> (tuners/lokr/layer.py), written out for the test.</summary>
    private static (long M, long N) Factorization(long dimension)
    {
        long m = 1, n = dimension, length = m + n;
        while (m < n)
        {
            long newM = m + 1;
            while (dimension % newM != 0) newM++;
            long newN = dimension / newM;
            if (newM + newN > length) break;
            (m, n) = (newM, newN);
        }
        return m > n ? (n, m) : (m, n);
    }

    private (string Dir, Tensor Logits) SaveAndRun(SentimentClassifier trained, string method)
    {
        string dir = Path.Combine(_root, method);
        AdapterFiles.Save(trained, dir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        return (dir, Run(trained));
    }

    private static Tensor Run(SentimentClassifier classifier)
    {
        classifier.eval();
        using var noGrad = no_grad();
        var (ids, mask) = SentimentExperiment.Batch([[5, 9, 200, 17], [3000, 4], [8001, 1, 2, 3, 4, 5]]);
        using (ids)
        using (mask)
        {
            return classifier.call(ids, mask);
        }
    }

    private void AssertReloadsBitwise(string dir, Tensor expected, int tensors)
    {
        var fresh = Fresh();
        Assert.Empty(fresh.AdapterNames());
        using (var before = Run(fresh)) Assert.False(before.allclose(expected), "the fresh model already gives the trained logits");
        var result = AdapterFiles.Load(fresh, dir);
        Assert.Equal(tensors, result.LoadedTensors);
        Assert.Equal(new[] { "head" }, result.ModulesToSave);
        Assert.Equal(new[] { AdapterNames.Default }, fresh.AdapterNames());
        using var actual = Run(fresh);
        Assert.True(BitwiseEqual(expected, actual), $"the adapter reloaded from {dir} gives different logits");
    }

    [Fact]
    public void LoRA_adapter_follows_peft_format_and_reloads_bitwise()
    {
        var trained = Trained("lora");
        var (dir, logits) = SaveAndRun(trained, "lora");
        using var _ = logits;

        var config = Config(dir, "LORA");
        Assert.Equal(Projections, Names(config["target_modules"]));
        Assert.Equal(4, (int?)config["r"]);
        Assert.Equal(8.0, (double?)config["lora_alpha"]);
        Assert.Equal("SEQ_CLS", (string?)config["task_type"]);
        Assert.Equal(new[] { "head" }, Names(config["modules_to_save"]));

        var expected = Head("base_model.model.");
        for (int layer = 0; layer < UseLiteConfig.Layers; layer++)
        {
            foreach (var (name, input, output) in Layers(layer))
            {
                string path = $"base_model.model.encoder.layers.{layer}.{name}.";
                expected[path + "lora_A.weight"] = [4, input];
                expected[path + "lora_B.weight"] = [output, 4];
            }
        }
        AssertWeights(dir, expected);
        AssertReloadsBitwise(dir, logits, expected.Count);
    }

    [Fact]
    public void LoKr_adapter_follows_peft_format_and_reloads_bitwise()
    {
        var trained = Trained("lokr");
        var (dir, logits) = SaveAndRun(trained, "lokr");
        using var _ = logits;

        var config = Config(dir, "LOKR");
        Assert.Equal(Projections, Names(config["target_modules"]));
        Assert.Equal(4, (int?)config["r"]);
        Assert.Equal(8.0, (double?)config["alpha"]);
        Assert.Equal(-1, (int?)config["decompose_factor"]);
        Assert.False((bool?)config["decompose_both"]);
        Assert.Equal(new[] { "head" }, Names(config["modules_to_save"]));

        // PEFT's LoKr layout: out = l·k, in = m·n by factorization(); w1 [l, m] stays full (decompose_both false);
        // w2 [k, n] becomes lokr_w2_a [k, r] · lokr_w2_b [r, n] when r < max(k, n) / 2.
        var expected = Head("base_model.model.");
        for (int layer = 0; layer < UseLiteConfig.Layers; layer++)
        {
            foreach (var (name, input, output) in Layers(layer))
            {
                string path = $"base_model.model.encoder.layers.{layer}.{name}.";
                var (l, k) = Factorization(output);
                var (m, n) = Factorization(input);
                expected[path + "lokr_w1"] = [l, m];
                if (4 < Math.Max(k, n) / 2.0)
                {
                    expected[path + "lokr_w2_a"] = [k, 4];
                    expected[path + "lokr_w2_b"] = [4, n];
                }
                else
                {
                    expected[path + "lokr_w2"] = [k, n];
                }
            }
        }
        Assert.Equal(new long[] { 16, 16 }, expected["base_model.model.encoder.layers.0.q_proj.lokr_w1"]);
        AssertWeights(dir, expected);
        AssertReloadsBitwise(dir, logits, expected.Count);
    }

    [Fact]
    public void Prompt_adapter_follows_peft_format_and_reloads_bitwise()
    {
        var trained = Trained("prompt");
        var (dir, logits) = SaveAndRun(trained, "prompt");
        using var _ = logits;

        var config = Config(dir, "PROMPT_TUNING");
        Assert.Equal(SentimentMethods.PromptTokens, (int?)config["num_virtual_tokens"]);
        Assert.Equal(UseLiteConfig.EmbeddingDim, (int?)config["token_dim"]);
        Assert.Equal(1, (int?)config["num_transformer_submodules"]);
        Assert.Equal("RANDOM", (string?)config["prompt_tuning_init"]);
        Assert.Equal("SEQ_CLS", (string?)config["task_type"]);
        Assert.Equal(new[] { "head" }, Names(config["modules_to_save"]));

        // Prompt learning: one prompt_embeddings tensor; PEFT's PeftModel holds the base model directly, so the head's
        // keys are base_model.head.* (no ".model" segment).
        var expected = Head("base_model.");
        expected["prompt_embeddings"] = [SentimentMethods.PromptTokens, UseLiteConfig.EmbeddingDim];
        AssertWeights(dir, expected);
        AssertReloadsBitwise(dir, logits, expected.Count);
    }

    [Theory]
    [InlineData("lora", "base_model.model.encoder.layers.0.q_proj.lora_A.weight", "base_model.model.head.weight")]
    [InlineData("lokr", "base_model.model.encoder.layers.1.fc1.lokr_w2_b", "base_model.model.encoder.layers.0.v_proj.lokr_w1")]
    [InlineData("prompt", "prompt_embeddings", "base_model.head.bias")]
    public void Load_failures_name_the_problem_and_leave_the_model_unchanged(string method, string rankKey, string missingKey)
    {
        var trained = Trained(method);
        var (dir, logits) = SaveAndRun(trained, method);
        logits.Dispose();
        // Into a classifier that has the method's adapter already (the file must fit it) ...
        AssertLoadFailuresLeaveModelUnchanged(() => WithMethod(method), dir, AdapterNames.Default, rankKey, missingKey);
        if (method == "prompt") return;   // a prompt's size is checked against the config before it is created (next test)
        // ... and into one without adapters, where the load creates the adapter from the config and removes it on failure.
        AssertLoadFailuresLeaveModelUnchanged(NewClassifier, dir, AdapterNames.Default, rankKey, missingKey);
    }

    [Fact]
    public void A_prompt_file_whose_tensor_disagrees_with_its_config_is_refused_before_anything_is_created()
    {
        var trained = Trained("prompt");
        var (dir, logits) = SaveAndRun(trained, "prompt");
        logits.Dispose();
        EditWeights(dir, t => t["prompt_embeddings"] = zeros(SentimentMethods.PromptTokens + 1, UseLiteConfig.EmbeddingDim));
        var fresh = Fresh();
        var before = Snapshot(fresh);
        var error = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
        // The creation check of issue 9 A (AdapterCreationCheck) refuses it first, naming the config's sizes and the tensor's shape.
        Assert.Contains("\"num_virtual_tokens\": 8", error.Message, StringComparison.Ordinal);
        Assert.Contains("'prompt_embeddings' [9, 256]", error.Message, StringComparison.Ordinal);
        Assert.Contains("nothing was created", error.Message, StringComparison.Ordinal);
        Assert.Empty(fresh.AdapterNames());
        Assert.Equal(before.Keys.Order(StringComparer.Ordinal), Snapshot(fresh).Keys.Order(StringComparer.Ordinal));
    }
}
