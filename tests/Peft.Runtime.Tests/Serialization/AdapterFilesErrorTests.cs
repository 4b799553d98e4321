using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>Every failing load explains itself and leaves the model exactly as it was.</summary>
public sealed class AdapterFilesErrorTests : IDisposable
{
    private const string QA = "base_model.model.blocks.0.attn.q_proj.lora_A.weight";
    private const string QB = "base_model.model.blocks.0.attn.q_proj.lora_B.weight";
    private const string VB = "base_model.model.blocks.1.attn.v_proj.lora_B.weight";
    private const string Stray = "base_model.model.blocks.0.attn.o_proj.lora_A.weight";

    private readonly SafetensorsTempDirectory _dir = new();
    private readonly string _adapter;

    public AdapterFilesErrorTests()
    {
        _adapter = _dir.File("adapter");
        using var model = AfModel.Adapted();
        RandomizeAdapters(model);
        AdapterFiles.Save(model, _adapter);
    }

    public void Dispose() => _dir.Dispose();

    private string ConfigPath => Path.Combine(_adapter, AdapterFiles.ConfigFileName);

    private string WeightsPath => Path.Combine(_adapter, AdapterFiles.WeightsFileName);

    /// <summary>
    /// Runs <paramref name="load"/> on a model whose adapters hold known random values, for the declared adapter and for
    /// a new name; checks the exception and that parameters, trainability and adapter names are unchanged.
    /// </summary>
    private static List<TException> AssertFailsUnchanged<TException>(Func<nn.Module, string, object> load)
        where TException : Exception
    {
        var errors = new List<TException>();
        foreach (var name in new[] { "default", "other" })
        {
            using var model = AfModel.Adapted();
            RandomizeAdapters(model);
            model.ApplyTrainability();
            var before = Snapshot(model);
            var grads = model.named_parameters().Select(p => (p.name, p.parameter.requires_grad)).ToList();
            var names = model.AdapterNames().ToList();

            errors.Add(Assert.Throws<TException>(() => load(model, name)));

            AssertUnchanged(before, model);
            Assert.Equal(names, model.AdapterNames());
            Assert.Equal(grads, model.named_parameters().Select(p => (p.name, p.parameter.requires_grad)).ToList());
        }
        return errors;
    }

    [Fact]
    public void Missing_unexpected_and_mis_shaped_tensors_are_all_listed_in_one_exception()
    {
        EditWeights(_adapter, t =>
        {
            t.Remove(QA, out var qa);
            qa!.Dispose();
            t[Stray] = torch.zeros(4, 8);
            t[VB].Dispose();
            t[VB] = torch.zeros(8, 3);
        });

        foreach (var ex in AssertFailsUnchanged<TensorMismatchException>((m, n) => AdapterFiles.Load(m, _adapter, n)))
        {
            Assert.Equal(new[] { QA }, ex.MissingKeys);
            Assert.Equal(new[] { Stray }, ex.UnexpectedKeys);
            Assert.Equal(new[] { VB + ": file [8, 3], model [8, 2]" }, ex.ShapeMismatches);
            Assert.Contains(QA, ex.Message);
            Assert.Contains(Stray, ex.Message);
            Assert.Contains(VB, ex.Message);
            Assert.Contains(WeightsPath, ex.Message);
            Assert.Contains("nothing was loaded", ex.Message);
        }
    }

    [Fact]
    public void Non_strict_load_returns_the_problems_and_loads_the_rest()
    {
        EditWeights(_adapter, t =>
        {
            t.Remove(QA, out var qa);
            qa!.Dispose();
            t[Stray] = torch.zeros(4, 8);
            t[VB].Dispose();
            t[VB] = torch.zeros(8, 3);
        });
        using var model = AfModel.Adapted();
        var result = AdapterFiles.Load(model, _adapter, strict: false);
        Assert.Equal(new[] { QA }, result.MissingKeys);
        Assert.Equal(new[] { Stray }, result.UnexpectedKeys);
        Assert.Single(result.ShapeMismatches);
        Assert.Equal(12 - 2, result.LoadedTensors);
        Assert.Equal("LORA", result.Config.PeftType);
        var q = (LoRAAdapter)model.AdaptedLayers().Single(l => l.Path == "blocks.0.attn.q_proj").Layer.GetAdapter("default");
        using var stored = Read(_adapter, QB);
        AssertBitwiseEqual(stored, q.B);
    }

    [Fact]
    public void NaN_in_any_tensor_fails_before_anything_is_copied()
    {
        // The NaN sits in the last tensor the model expects, so every other tensor would already be copied by a
        // check-while-copying load.
        EditWeights(_adapter, t =>
        {
            using var noGrad = no_grad();
            t[VB][0, 0] = float.NaN;
        });
        foreach (var ex in AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n)))
        {
            Assert.Contains(VB, ex.Message);
            Assert.Contains("NaN", ex.Message);
        }
    }

    [Fact]
    public void Infinity_is_rejected_like_NaN()
    {
        EditWeights(_adapter, t =>
        {
            using var noGrad = no_grad();
            t[QB][1, 1] = float.PositiveInfinity;
        });
        var ex = AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n))[0];
        Assert.Contains(QB, ex.Message);
    }

    [Fact]
    public void Corrupt_safetensors_header_names_the_file()
    {
        var bytes = File.ReadAllBytes(WeightsPath);
        bytes[10] = (byte)'#';
        File.WriteAllBytes(WeightsPath, bytes);
        foreach (var ex in AssertFailsUnchanged<SafetensorsFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n)))
            Assert.Contains(Path.GetFullPath(WeightsPath), ex.Message);
    }

    [Fact]
    public void Truncated_weights_file_names_the_file()
    {
        var bytes = File.ReadAllBytes(WeightsPath);
        File.WriteAllBytes(WeightsPath, bytes[..(bytes.Length - 7)]);
        var ex = AssertFailsUnchanged<SafetensorsFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n))[0];
        Assert.Contains(Path.GetFullPath(WeightsPath), ex.Message);
    }

    [Fact]
    public void A_LoKr_file_does_not_load_into_a_LoRA_adapter()
    {
        using (var kron = new AfKronModel()) AdapterFiles.Save(kron, _adapter);
        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains("LOKR", ex.Message);
        Assert.Contains("LORA", ex.Message);
        Assert.Contains(ConfigPath, ex.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void A_LoRA_file_does_not_load_into_a_prompt_adapter()
    {
        using var model = new AfPromptModel();
        var before = Snapshot(model);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains("PROMPT_TUNING", ex.Message);
        AssertUnchanged(before, model);
    }

    [Theory]
    [InlineData("peft_type", "\"BOFT\"", "peft_type \"BOFT\" is not supported")]
    [InlineData("fan_in_fan_out", "true", "fan_in_fan_out")]
    [InlineData("bias", "\"all\"", "bias \"all\"")]
    [InlineData("bias", "\"lora_only\"", "bias \"lora_only\"")]
    [InlineData("lora_bias", "true", "lora_bias")]
    public void Unsupported_features_are_refused_naming_file_and_field(string field, string json, string expected)
    {
        EditConfig(_adapter, c => c[field] = JsonNode.Parse(json));
        foreach (var ex in AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n)))
        {
            Assert.Contains(expected, ex.Message);
            Assert.Contains(ConfigPath, ex.Message);
        }
    }

    [Theory]
    [InlineData("r", "\"4\"", "\"r\" must be a number")]
    [InlineData("r", "4.5", "\"r\" must be an integer")]
    [InlineData("lora_alpha", "[8]", "\"lora_alpha\" must be a number")]
    [InlineData("use_rslora", "\"no\"", "\"use_rslora\" must be true or false")]
    [InlineData("peft_type", "7", "\"peft_type\" must be a string")]
    [InlineData("target_modules", "5", "\"target_modules\" must be a list of names or a regex string")]
    [InlineData("target_modules", "[\"q_proj\", 3]", "\"target_modules\" must hold strings")]
    [InlineData("rank_pattern", "[]", "\"rank_pattern\" must be an object")]
    [InlineData("rank_pattern", "{\"q_proj\": 2.5}", "\"rank_pattern\" must be an integer")]
    [InlineData("alpha_pattern", "{\"q_proj\": \"x\"}", "\"alpha_pattern\" must be a number")]
    [InlineData("layers_to_transform", "\"0\"", "\"layers_to_transform\" must be a number")]
    public void Wrong_field_types_name_file_and_field(string field, string json, string expected)
    {
        EditConfig(_adapter, c => c[field] = JsonNode.Parse(json));
        foreach (var ex in AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n)))
        {
            Assert.Contains(expected, ex.Message);
            Assert.Contains(ConfigPath, ex.Message);
        }
    }

    [Fact]
    public void Missing_peft_type_names_the_field()
    {
        EditConfig(_adapter, c => c.Remove("peft_type"));
        var ex = AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n))[0];
        Assert.Contains("\"peft_type\" is missing", ex.Message);
        Assert.Contains(ConfigPath, ex.Message);
    }

    [Theory]
    [InlineData("{ \"peft_type\": \"LORA\", ", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("{ \"peft_type\": \"LORA\", \"r\": 4, \"r\": 8 }", "Duplicate property 'r'")]
    public void Corrupt_config_names_the_file(string text, string expected)
    {
        File.WriteAllText(ConfigPath, text);
        var ex = AssertFailsUnchanged<AdapterFormatException>((m, n) => AdapterFiles.Load(m, _adapter, n))[0];
        Assert.Contains(expected, ex.Message);
        Assert.Contains(ConfigPath, ex.Message);
    }

    [Fact]
    public void Unknown_config_keys_are_ignored()
    {
        EditConfig(_adapter, c =>
        {
            c["some_future_option"] = new JsonObject { ["nested"] = new JsonArray(1, 2) };
            c["another"] = null;
        });
        using var model = AfModel.Adapted();
        var result = AdapterFiles.Load(model, _adapter);
        Assert.Equal(12, result.LoadedTensors);
        Assert.True(result.Config.Raw.ContainsKey("some_future_option"));
    }

    [Fact]
    public void A_config_whose_alpha_differs_from_the_models_adapter_is_refused()
    {
        // Same tensors, different scaling: loading would silently compute another update.
        EditConfig(_adapter, c => c["lora_alpha"] = 16);
        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains("blocks.0.attn.q_proj: lora_alpha is 16 in the config, 8 in the model", ex.Message);
        Assert.Contains("blocks.1.attn.k_proj", ex.Message);
        Assert.DoesNotContain("v_proj", ex.Message); // v_proj's alpha comes from alpha_pattern
        AssertUnchanged(before, model);
    }

    [Fact]
    public void A_config_with_another_rslora_setting_is_refused()
    {
        EditConfig(_adapter, c => c["use_rslora"] = true);
        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains("use_rslora is true in the config, false in the model", ex.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Loading_into_a_merged_adapter_is_refused()
    {
        using var model = AfModel.Adapted();
        RandomizeAdapters(model);
        model.Merge();
        var before = Snapshot(model);
        var ex = Assert.Throws<InvalidOperationException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains("Unmerge", ex.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Missing_directory_config_or_weights_are_reported_by_path()
    {
        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        string nowhere = _dir.File("nowhere");
        var dirEx = Assert.Throws<DirectoryNotFoundException>(() => AdapterFiles.Load(model, nowhere));
        Assert.Contains(nowhere, dirEx.Message);

        File.Delete(WeightsPath);
        var weightsEx = Assert.Throws<FileNotFoundException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains(AdapterFiles.WeightsFileName, weightsEx.Message);
        Assert.Equal(WeightsPath, weightsEx.FileName);

        File.Delete(ConfigPath);
        var configEx = Assert.Throws<FileNotFoundException>(() => AdapterFiles.Load(model, _adapter));
        Assert.Contains(ConfigPath, configEx.Message);
        AssertUnchanged(before, model);
    }

    [Fact]
    public void A_new_adapter_whose_targets_match_no_module_is_refused()
    {
        EditConfig(_adapter, c => c["target_modules"] = new JsonArray("nonexistent"));
        var ex = AssertFailsUnchanged<AdapterFormatException>((m, n) => n == "default" ? throw new AdapterFormatException("skip") : AdapterFiles.Load(m, _adapter, n))[1];
        Assert.Contains("nonexistent", ex.Message);
        Assert.Contains("'nonexistent' matches no module", ex.Message);
    }

    [Fact]
    public void A_new_adapter_targeting_a_plain_Linear_wraps_it_and_a_file_without_its_tensors_leaves_the_model_unchanged()
    {
        // o_proj is a plain Linear member of a generated class: targeting wraps it for the new adapter, then the
        // strict load finds no o_proj tensors in the file and undoes the adapter.
        EditConfig(_adapter, c => c["target_modules"] = new JsonArray("q_proj", "o_proj"));
        using var model = AfModel.Adapted();
        var before = Snapshot(model);
        var ex = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(model, _adapter, "other"));
        Assert.Contains("blocks.0.attn.o_proj.lora_A.weight", ex.Message);
        Assert.DoesNotContain("other", model.AdapterNames());
        AssertUnchanged(before, model);
    }

    [Fact]
    public void Saving_an_adapter_the_model_lacks_names_the_existing_ones_and_writes_nothing()
    {
        using var model = AfModel.Adapted();
        string dir = _dir.File("missing");
        var ex = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, dir, "nope"));
        Assert.Contains("'nope'", ex.Message);
        Assert.Contains("default", ex.Message);
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void Saving_an_adapter_name_that_mixes_LoRA_and_Kronecker_is_refused()
    {
        using var model = AfModel.Adapted();
        var layers = model.AdaptedLayers().ToList();
        layers[0].Layer.WithLoRA("mix", new LoRAOptions(Rank: 2));
        layers[1].Layer.WithKronecker("mix", new KroneckerOptions(Rank: 2));
        string dir = _dir.File("mix");
        var ex = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, dir, "mix"));
        Assert.Contains("mixes", ex.Message);
        Assert.Contains(layers[1].Path, ex.Message);
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void Saving_layers_with_different_dropout_under_one_name_is_refused_and_keeps_the_previous_files()
    {
        using var model = AfModel.Adapted();
        var layers = model.AdaptedLayers().ToList();
        layers[0].Layer.WithLoRA("drop", new LoRAOptions(Rank: 2, Dropout: 0.1));
        layers[1].Layer.WithLoRA("drop", new LoRAOptions(Rank: 2, Dropout: 0.0));
        var weightsBefore = File.ReadAllBytes(WeightsPath);
        var configBefore = File.ReadAllText(ConfigPath);

        var ex = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, _adapter, "drop"));
        Assert.Contains("dropout", ex.Message);
        Assert.Equal(weightsBefore, File.ReadAllBytes(WeightsPath));
        Assert.Equal(configBefore, File.ReadAllText(ConfigPath));
    }
}
