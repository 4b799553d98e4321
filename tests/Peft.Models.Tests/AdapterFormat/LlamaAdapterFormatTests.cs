using Peft.Models.Llama;
using Peft.Models.Tests.Llama;
using Peft.Serialization;
using static Peft.Models.Tests.AdapterFormat.AdapterFormatSupport;
using static TorchSharp.torch;

namespace Peft.Models.Tests.AdapterFormat;

/// <summary>
/// The tiny Llama (hidden 32, 2 layers, 4 query heads, 2 key/value heads of size 8) with LoRA rank 8, alpha 16 on PEFT's
/// default targets q_proj and v_proj (LlamaTargets.LoRA): its adapter file against PEFT's format for a CAUSAL_LM
/// LoraConfig, reloaded into the stock model (which declares no adapter) as PEFT's from_pretrained does.
/// </summary>
public sealed class LlamaAdapterFormatTests : IDisposable
{
    private readonly string _root = TempDir("llama");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string BasePath => Path.Combine(_root, "base.safetensors");

    /// <summary>The model with its base weights saved to <see cref="BasePath"/> first, then LoRA on q/v with random values (a stand-in for training).</summary>
    private LlamaForCausalLM Trained()
    {
        var model = TinyLlama.Create(40);
        ModelWeights.Save(model, BasePath);
        model.ApplyTargets(new PeftTargets(LlamaTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        RandomizeAdapters(model, 41);
        return model;
    }

    /// <summary>A new stock model (no adapter) with the same base weights (read from the file, so other tests' use of the global generator does not matter).</summary>
    private LlamaForCausalLM Fresh()
    {
        var model = TinyLlama.Create(45);
        ModelWeights.Load(model, BasePath);
        return model;
    }

    private string Save(LlamaForCausalLM model)
    {
        string dir = Path.Combine(_root, "adapter");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM", BaseModelNameOrPath = "tiny-llama" });
        return dir;
    }

    [Fact]
    public void LoRA_adapter_files_follow_peft_format_and_reload_bitwise()
    {
        using var model = Trained();
        string dir = Save(model);

        var config = Config(dir, "LORA");
        Assert.Equal(new[] { "q_proj", "v_proj" }, Names(config["target_modules"]));
        Assert.Equal(8, (int?)config["r"]);
        Assert.Equal(16.0, (double?)config["lora_alpha"]);
        Assert.Equal("CAUSAL_LM", (string?)config["task_type"]);
        Assert.Equal("tiny-llama", (string?)config["base_model_name_or_path"]);
        Assert.Equal("none", (string?)config["bias"]);
        Assert.False((bool?)config["use_dora"]);
        Assert.False((bool?)config["fan_in_fan_out"]);
        Assert.False((bool?)config["use_rslora"]);
        Assert.Null(config["modules_to_save"]);   // a causal LM has no [Trainable] member

        // PEFT's keys: the model's state-dict path under base_model.model., adapter name dropped;
        // lora_A [r, in], lora_B [out, r]; v_proj's out is key/value heads × head size = 2 × 8.
        var expected = new Dictionary<string, long[]>();
        for (int layer = 0; layer < 2; layer++)
        {
            string attn = $"base_model.model.model.layers.{layer}.self_attn.";
            expected[attn + "q_proj.lora_A.weight"] = [8, 32];
            expected[attn + "q_proj.lora_B.weight"] = [32, 8];
            expected[attn + "v_proj.lora_A.weight"] = [8, 32];
            expected[attn + "v_proj.lora_B.weight"] = [16, 8];
        }
        AssertWeights(dir, expected);

        using var ids = TinyLlama.RandomIds(42, 2, 7);
        using var logits = model.call(ids);
        using var fresh = Fresh();   // same base weights, no adapter: the file's target_modules create it
        using (var before = fresh.call(ids)) Assert.False(before.allclose(logits), "the fresh model already gives the trained logits");
        var result = AdapterFiles.Load(fresh, dir);
        Assert.Equal(4, fresh.AdaptedLayers().Count(l => l.Layer.HasAdapter(AdapterNames.Default)));
        Assert.Equal(8, result.LoadedTensors);
        Assert.Empty(result.ModulesToSave);
        using var reloaded = fresh.call(ids);
        Assert.True(BitwiseEqual(logits, reloaded), "the reloaded adapter gives different logits");
    }

    [Fact]
    public void Load_failures_name_the_problem_and_leave_the_model_unchanged()
    {
        using var model = Trained();
        string dir = Save(model);
        // Into a model that has the adapter already, and into the stock model, where the load creates it and removes it on failure.
        foreach (var create in new Func<nn.Module>[] { () => TinyLlama.CreateWithLoRA(43), () => TinyLlama.Create(43) })
        {
            AssertLoadFailuresLeaveModelUnchanged(
                create,
                dir,
                AdapterNames.Default,
                rankKey: "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
                missingKey: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
        }
    }

    [Fact]
    public void A_config_with_another_rank_is_refused_before_anything_is_copied()
    {
        using var model = Trained();
        string dir = Save(model);
        EditConfig(dir, c => c["r"] = 4);
        using var fresh = TinyLlama.CreateWithLoRA(44);
        var before = Snapshot(fresh);
        var error = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Contains("r is 4 in the config, 8 in the model", error.Message, StringComparison.Ordinal);
        AssertUnchanged(before, fresh);

        // The stock model creates the adapter with the config's r = 4, which the file's rank-8 tensors do not fit.
        using var stock = TinyLlama.Create(44);
        var stockBefore = Snapshot(stock);
        var mismatch = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(stock, dir));
        Assert.Contains(mismatch.ShapeMismatches, m => m.StartsWith("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: file [8, 32], model [4, 32]", StringComparison.Ordinal));
        AssertUnchanged(stockBefore, stock);
        Assert.Empty(stock.AdapterNames());
    }
}
