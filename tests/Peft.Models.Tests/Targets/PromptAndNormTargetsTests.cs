using Peft.Models.Bert;
using Peft.Models.Gpt2;
using Peft.Models.Llama;
using Peft.Models.Tests.Bert;
using Peft.Models.Tests.Gpt2;
using Peft.Models.Tests.Llama;
using Peft.Models.UseLite;
using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Targets;

/// <summary>
/// The non-linear layers configuration targeting reaches on the stock families: the input embedding (prompt tuning:
/// forward, KV cache, padding, PEFT files reloaded into a stock model) and the norms (wrapped for LayerNorm tuning, with
/// Llama's own RMSNorm through <see cref="IAdaptableNorm"/>) with LayerNorm tuning, which computes as before until the
/// trained copies change, and saves in PEFT's layout.
/// </summary>
public sealed class PromptAndNormTargetsTests : IDisposable
{
    private readonly string _root = TinyLlama.TempDir("prompt-norm");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>
    /// Tunes the norms <paramref name="targets"/> selects (a copy of their own parameters): the output is unchanged bit for
    /// bit and the base keys are the same; changing the copies changes the output, and disabling adapters restores it.
    /// </summary>
    private static void AssertNormsWrapAndOverride(nn.Module model, TargetModules targets, int expectedNorms, Func<Tensor> run)
    {
        using var _ = no_grad();
        using var before = run();
        var keys = model.state_dict().Keys.ToList();
        var wrapped = model.ApplyTargets(new PeftTargets(targets, new LNTuningOptions()));
        Assert.Equal(expectedNorms, wrapped.Count);
        var layers = model.AdaptedLayers().Where(l => l.Layer.HasAdapter(AdapterNames.Default)).ToList();
        Assert.All(layers, l => Assert.IsType<AdaptedNorm>(l.Layer));
        Assert.Equal(keys, model.state_dict().Keys.Where(k => !k.Contains(".default.", StringComparison.Ordinal)));
        using (var same = run()) Assert.True(TinyLlama.BitwiseEqual(before, same), "a wrapped norm with its own parameters changed the output");

        foreach (var (_, layer) in layers) ((LNTuningAdapter)layer.GetAdapter(AdapterNames.Default)).Weight.mul_(1.5);
        using (var changed = run()) Assert.False(changed.allclose(before, rtol: 1e-4, atol: 1e-5), "the adapter's weight is not used");
        using (model.DisableAdapters())
        using (var restored = run())
        {
            Assert.True(TinyLlama.BitwiseEqual(before, restored));
        }
    }

    [Fact]
    public void Llama_rms_norms_wrap_through_IAdaptableNorm()
    {
        using var model = TinyLlama.Create(40);
        using var ids = TinyLlama.RandomIds(41, 2, 6);
        AssertNormsWrapAndOverride(model, LlamaTargets.LayerNormTuning, 5, () => model.call(ids));
    }

    [Fact]
    public void Llama_layer_norm_tuning_saves_peft_keys_and_reloads_into_a_stock_model()
    {
        using var model = TinyLlama.Create(47);
        using var ids = TinyLlama.RandomIds(48, 2, 6);
        model.ApplyTargets(new PeftTargets(LlamaTargets.LayerNormTuning, new LNTuningOptions()));
        using (no_grad())
        {
            foreach (var p in model.AdapterParameters()) p.mul_(1.25);
        }

        using var _ = no_grad();
        using var tuned = model.call(ids);
        string dir = Path.Combine(_root, "llama-ln");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
        // PEFT's keys for Llama's RMSNorms: weight only (RMSNorm has no bias); no base_layer keys.
        Assert.Equal(
            new[] { "base_model.model.model.layers.0.input_layernorm.ln_tuning_layers.weight", "base_model.model.model.layers.0.post_attention_layernorm.ln_tuning_layers.weight",
                "base_model.model.model.layers.1.input_layernorm.ln_tuning_layers.weight", "base_model.model.model.layers.1.post_attention_layernorm.ln_tuning_layers.weight",
                "base_model.model.model.norm.ln_tuning_layers.weight" },
            AdapterFormat.AdapterFormatSupport.Keys(dir).Order(StringComparer.Ordinal));
        var config = AdapterFormat.AdapterFormatSupport.Config(dir, "LN_TUNING");
        Assert.Equal(new[] { "input_layernorm", "norm", "post_attention_layernorm" }, config["target_modules"]!.AsArray().Select(n => (string?)n).Order(StringComparer.Ordinal));

        using var fresh = TinyLlama.Create(47);
        fresh.LoadAdapterWithTargets(dir);
        using var reloaded = fresh.call(ids);
        Assert.True(TinyLlama.BitwiseEqual(tuned, reloaded), "the reloaded LayerNorm tuning gives different logits");
    }

    [Fact]
    public void Gpt2_layer_norms_wrap()
    {
        using var model = TinyGpt2.Create(42);
        using var ids = TinyGpt2.RandomIds(43, 2, 6);
        AssertNormsWrapAndOverride(model, Gpt2Targets.LayerNormTuning, 5, () => model.call(ids));
    }

    [Fact]
    public void Bert_and_UseLite_layer_norms_wrap()
    {
        using (var bert = TinyBert.Create(44))
        {
            using var ids = TinyBert.RandomIds(45, 2, 6);
            AssertNormsWrapAndOverride(bert, BertTargets.LayerNormTuning, 5, () => bert.call(ids));
        }

        manual_seed(46);
        using var encoder = new UseLiteEncoder();
        encoder.eval();
        using var tokens = tensor(new long[] { 5, 9, 200, 17, 3000, 4, 0, 0 }, new long[] { 2, 4 });
        using var mask = tensor(new[] { true, true, true, true, true, true, false, false }, new long[] { 2, 4 });
        AssertNormsWrapAndOverride(encoder, UseLiteTargets.LayerNormTuning, 4, () => encoder.call(tokens, mask));
    }

    [Fact]
    public void Llama_prompt_by_targets_prepends_tokens_keeps_the_kv_cache_exact_and_reloads_into_a_stock_model()
    {
        using var model = TinyLlama.Create(30);
        using var ids = TinyLlama.RandomIds(31, 2, 6);
        using var _ = no_grad();
        using var plain = model.call(ids);

        var wrapped = model.ApplyTargets(new PeftTargets(LlamaTargets.PromptEmbedding, new PromptTuningOptions(4)));
        Assert.Equal(new[] { "model.embed_tokens" }, wrapped);
        Assert.Equal(4 * 32, model.GetTrainableSummary().TrainableParameters);
        using var full = model.call(ids);
        Assert.Equal(new long[] { 2, 10, 64 }, full.shape);
        using (var text = model.StripVirtualTokens(full)) Assert.False(text.allclose(plain, rtol: 1e-4, atol: 1e-5), "the prompt does not reach the text's logits");

        // With a cache the prompt enters it once; the following chunks see it and are not prefixed again.
        using (var cache = new KvCache(2))
        {
            using var first = model.Forward(ids[.., ..4], cache);
            Assert.Equal(new long[] { 2, 8, 64 }, first.shape);
            using var second = model.Forward(ids[.., 4..5], cache);
            using var third = model.Forward(ids[.., 5..6], cache);
            Assert.Equal(10, cache.Length);
            using var incremental = cat([first, second, third], 1);
            Assert.True(incremental.allclose(full, rtol: 1e-4, atol: 1e-5), "cached decoding with a prompt differs from the full forward");
        }

        using (var generated = model.Generate(ids, 1))
        using (var next = full.select(1, -1).argmax(-1))
        {
            Assert.Equal(next.data<long>().ToArray(), generated.select(1, -1).data<long>().ToArray());
        }

        // PEFT's prompt-learning file, loaded into a stock model that declares nothing: the input embedding is found and wrapped.
        string dir = Path.Combine(_root, "llama-prompt");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });
        Assert.Equal(new[] { "prompt_embeddings" }, AdapterFormat.AdapterFormatSupport.Keys(dir));
        var config = AdapterFormat.AdapterFormatSupport.Config(dir, "PROMPT_TUNING");
        Assert.Equal(4, (int?)config["num_virtual_tokens"]);
        Assert.Equal(32, (int?)config["token_dim"]);
        using var fresh = TinyLlama.Create(30);
        Assert.Equal(1, AdapterFiles.Load(fresh, dir).LoadedTensors);
        using var reloaded = fresh.call(ids);
        Assert.True(TinyLlama.BitwiseEqual(full, reloaded), "the reloaded prompt gives different logits");
    }

    [Fact]
    public void Gpt2_prompt_takes_the_first_positions_and_keeps_the_kv_cache_exact()
    {
        using var model = TinyGpt2.Create(32);
        using var ids = TinyGpt2.RandomIds(33, 2, 6);
        using var _ = no_grad();
        model.ApplyTargets(new PeftTargets(Gpt2Targets.PromptEmbedding, new PromptTuningOptions(3)));
        using var full = model.call(ids);
        Assert.Equal(new long[] { 2, 9, TinyGpt2.Vocab }, full.shape);
        using var cache = new KvCache(TinyGpt2.Layers);
        using var first = model.Forward(ids[.., ..5], cache);
        using var second = model.Forward(ids[.., 5..6], cache);
        using var incremental = cat([first, second], 1);
        Assert.True(incremental.allclose(full, rtol: 1e-4, atol: 1e-5), "cached decoding with a prompt differs from the full forward");

        // n_positions counts the virtual tokens: 62 ids + 3 virtual tokens exceed 64 positions.
        using var tooLong = TinyGpt2.RandomIds(34, 1, TinyGpt2.Positions - 2);
        Assert.Contains("virtual tokens included", Assert.Throws<ArgumentException>(() => model.call(tooLong)).Message);
    }

    [Fact]
    public void Bert_prompt_is_attended_to_despite_padding_and_reloads_with_the_classifier()
    {
        using var model = TinyBert.Create(35);
        using var _ = no_grad();
        using var ids = TinyBert.RandomIds(36, 1, 5);
        using var plain = model.call(ids);
        model.ApplyTargets(new PeftTargets(BertTargets.PromptEmbedding, new PromptTuningOptions(3)));
        using var prompted = model.call(ids);
        Assert.Equal(new long[] { 1, 2 }, prompted.shape);
        Assert.False(prompted.allclose(plain, rtol: 1e-4, atol: 1e-5), "the prompt does not change the logits");

        // Padding with a mask: the virtual tokens get mask ones, the padded positions stay invisible.
        using var padded = cat([ids, zeros(1, 3, dtype: ScalarType.Int64)], 1);
        using var mask = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0 }, new long[] { 1, 8 });
        using (var withPadding = model.Forward(padded, mask)) Assert.True(withPadding.allclose(prompted, rtol: 1e-4, atol: 1e-5));

        string dir = Path.Combine(_root, "bert-prompt");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        Assert.Equal(new[] { "base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings" },
            AdapterFormat.AdapterFormatSupport.Keys(dir).Order(StringComparer.Ordinal));
        using var fresh = TinyBert.Create(35);
        var result = AdapterFiles.Load(fresh, dir);
        Assert.Equal(new[] { "classifier" }, result.ModulesToSave);
        using var reloaded = fresh.call(ids);
        Assert.True(TinyBert.BitwiseEqual(prompted, reloaded), "the reloaded prompt gives different logits");
    }
}
