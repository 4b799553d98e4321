using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using TorchSharp.Modules;
using static Peft.Runtime.Tests.Serialization.AdapterFilesSupport;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Serialization;

/// <summary>LoRA on an encoder layer, a [Trainable] classifier head (PEFT's modules_to_save) and a second LoRA adapter "other".</summary>
public sealed partial class MsClassifier : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4)]
    [LoRA(rank: 2, alpha: 4, Name = "other")]
    private Module<Tensor, Tensor> dense = Linear(8, 8);
    [Trainable] private Module<Tensor, Tensor> classifier = Linear(8, 3);

    public MsClassifier() : base(nameof(MsClassifier)) => InitializePeft();

    public Module<Tensor, Tensor> Classifier => classifier;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return classifier.call(functional.tanh(dense.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>The same model whose classifier is not [Trainable] (an adapter with modules_to_save still loads into it).</summary>
public sealed partial class MsFrozenHeadClassifier : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> dense = Linear(8, 8);
    private Module<Tensor, Tensor> classifier = Linear(8, 3);

    public MsFrozenHeadClassifier() : base(nameof(MsFrozenHeadClassifier)) => InitializePeft();

    public Module<Tensor, Tensor> Classifier => classifier;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return classifier.call(functional.tanh(dense.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Prompt tuning with a [Trainable] head: PEFT's prompt-learning keys have no ".model" segment.</summary>
public sealed partial class MsPromptClassifier : Module<Tensor, Tensor>
{
    [PromptTune(virtualTokens: 2)] private Module<Tensor, Tensor> embed = Embedding(20, 8);
    [Trainable] private Module<Tensor, Tensor> head = Linear(8, 2);

    public MsPromptClassifier() : base(nameof(MsPromptClassifier)) => InitializePeft();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return head.call(embed.call(ids).mean(new long[] { 1 })).MoveToOuterDisposeScope();
    }
}

/// <summary>A [Trainable] bare parameter: PEFT's modules_to_save cannot hold it.</summary>
public sealed partial class MsTrainableParameter : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> dense = Linear(4, 4);
    [Trainable] private Parameter scale = new(ones(4));

    public MsTrainableParameter() : base(nameof(MsTrainableParameter)) => InitializePeft();

    public override Tensor forward(Tensor x) => dense.call(x) * scale;
}

/// <summary>A [Trainable] <c>head</c> beside a frozen <c>lm_head</c>: PEFT's suffix rule would select both for "head".</summary>
public sealed partial class MsTwoHeads : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> dense = Linear(4, 4);
    private Module<Tensor, Tensor> lm_head = Linear(4, 4);
    [Trainable] private Module<Tensor, Tensor> head = Linear(4, 2);

    public MsTwoHeads() : base(nameof(MsTwoHeads)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return head.call(lm_head.call(dense.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>A block with a [Trainable] member of its own.</summary>
public sealed partial class MsInnerBlock : Module<Tensor, Tensor>
{
    [Trainable] private Module<Tensor, Tensor> inner = Linear(4, 4);

    public MsInnerBlock() : base(nameof(MsInnerBlock)) => InitializePeft();

    public override Tensor forward(Tensor x) => inner.call(x);
}

/// <summary>The block twice: frozen (its [Trainable] member stays frozen, so it is not saved) and plain (saved as block.inner).</summary>
public sealed partial class MsNested : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> dense = Linear(4, 4);
    [Freeze] private MsInnerBlock frozen = new();
    private MsInnerBlock block = new();

    public MsNested() : base(nameof(MsNested)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return block.call(frozen.call(dense.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>[Trainable] modules saved as PEFT's modules_to_save and loaded back.</summary>
public sealed class AdapterFilesModulesToSaveTests : IDisposable
{
    private const string Weight = "base_model.model.classifier.weight";
    private const string Bias = "base_model.model.classifier.bias";

    private readonly SafetensorsTempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    // Test classes run in parallel and share TorchSharp's global generator, so "the same base weights" are copied through
    // a file (ModelWeights: every non-adapter tensor), never recreated from a seed.
    private string BaseOf(int seed) => _dir.File($"base-{seed}.safetensors");

    /// <summary>A model whose base weights (untrained head included) are saved to <see cref="BaseOf"/> first, then trained (stand-in).</summary>
    private MsClassifier Trained(int seed)
    {
        manual_seed(seed);
        var model = new MsClassifier();
        ModelWeights.Save(model, BaseOf(seed));
        RandomizeAdapters(model);
        using (no_grad())
        {
            foreach (var p in model.Classifier.parameters()) init.normal_(p, 0.0, 1.0);
        }
        return model;
    }

    private string SaveTrained(int seed, string name = "adapter", AdapterSaveOptions? options = null)
    {
        string dir = _dir.File(name);
        using var model = Trained(seed);
        AdapterFiles.Save(model, dir, options: options);
        return dir;
    }

    [Fact]
    public void Save_lists_the_trainable_head_and_writes_it_under_peft_keys()
    {
        string dir = _dir.File("adapter");
        using var model = Trained(1);
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });

        var config = Config(dir);
        Assert.Equal(new[] { "classifier" }, config["modules_to_save"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(new[] { "dense" }, config["target_modules"]!.AsArray().Select(n => (string?)n));
        string weights = Path.Combine(dir, AdapterFiles.WeightsFileName);
        Assert.Equal(
            new[] { Bias, Weight, "base_model.model.dense.lora_A.weight", "base_model.model.dense.lora_B.weight" },
            Keys(weights));
        Assert.Equal(new long[] { 3, 8 }, Shape(weights, Weight));
        Assert.Equal(new long[] { 3 }, Shape(weights, Bias));
        using var saved = Read(dir, Weight);
        AssertBitwiseEqual(model.Classifier.parameters().First(), saved);
    }

    [Fact]
    public void Load_restores_the_head_so_a_fresh_model_gives_the_same_logits_bitwise()
    {
        using var trained = Trained(2);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(trained, dir);
        using var input = randn(5, 8);
        using var expected = Output(trained, input);

        // Same base weights, the untrained head and the adapters as constructed.
        using var fresh = new MsClassifier();
        ModelWeights.Load(fresh, BaseOf(2));
        using (var untouched = Output(fresh, input)) Assert.False(untouched.allclose(expected));
        var result = AdapterFiles.Load(fresh, dir);

        Assert.Equal(new[] { "classifier" }, result.ModulesToSave);
        Assert.Equal(4, result.LoadedTensors);
        using var actual = Output(fresh, input);
        AssertBitwiseEqual(expected, actual);
        Assert.All(fresh.Classifier.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void SaveTrainableMembers_false_writes_the_adapter_alone()
    {
        string dir = SaveTrained(3, options: new AdapterSaveOptions { SaveTrainableMembers = false });
        Assert.Null(Config(dir)["modules_to_save"]);
        Assert.DoesNotContain(Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)), k => k.Contains("classifier", StringComparison.Ordinal));

        using var fresh = new MsClassifier();
        var before = Snapshot(fresh.Classifier);
        var result = AdapterFiles.Load(fresh, dir);
        Assert.Empty(result.ModulesToSave);
        AssertUnchanged(before, fresh.Classifier);
    }

    [Theory]
    [InlineData("missing")]
    [InlineData("shape")]
    [InlineData("unexpected")]
    public void A_head_tensor_that_does_not_fit_is_named_and_nothing_changes(string problem)
    {
        string dir = SaveTrained(4);
        EditWeights(dir, tensors =>
        {
            switch (problem)
            {
                case "missing": tensors.Remove(Bias); break;
                case "shape": tensors[Weight] = zeros(2, 8); break;
                default: tensors["base_model.model.classifier.extra"] = zeros(1); break;
            }
        });

        using var fresh = new MsClassifier();
        var before = Snapshot(fresh);
        var error = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(fresh, dir));
        AssertUnchanged(before, fresh);
        switch (problem)
        {
            case "missing": Assert.Equal(new[] { Bias }, error.MissingKeys); break;
            case "shape": Assert.Contains($"{Weight}: file [2, 8], model [3, 8]", error.ShapeMismatches); break;
            default: Assert.Equal(new[] { "base_model.model.classifier.extra" }, error.UnexpectedKeys); break;
        }
        Assert.Contains("nothing was loaded", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_modules_to_save_name_the_model_lacks_is_an_error_naming_it()
    {
        string dir = SaveTrained(5);
        EditConfig(dir, c => c["modules_to_save"] = new JsonArray("classifier", "pooler_head"));

        using var fresh = new MsClassifier();
        var before = Snapshot(fresh);
        var error = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Contains("\"pooler_head\"", error.Message, StringComparison.Ordinal);
        AssertUnchanged(before, fresh);

        // Loading under a new adapter name fails the same way and leaves no half-created adapter behind.
        Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir, "third"));
        Assert.DoesNotContain("third", fresh.AdapterNames());
        AssertUnchanged(before, fresh);
    }

    [Fact]
    public void A_seq_cls_config_may_name_score_too_as_peft_adds_classifier_and_score_itself()
    {
        string dir = SaveTrained(6);
        EditConfig(dir, c =>
        {
            c["task_type"] = "SEQ_CLS";
            c["modules_to_save"] = new JsonArray("classifier", "score");
        });
        using var fresh = new MsClassifier();
        Assert.Equal(new[] { "classifier" }, AdapterFiles.Load(fresh, dir).ModulesToSave);

        // Without SEQ_CLS, "score" is just a name the model lacks.
        EditConfig(dir, c => c["task_type"] = "CAUSAL_LM");
        Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
    }

    [Fact]
    public void A_config_without_modules_to_save_finds_the_head_tensors_unexpected()
    {
        string dir = SaveTrained(7);
        EditConfig(dir, c => c["modules_to_save"] = null);
        using var fresh = new MsClassifier();
        var error = Assert.Throws<TensorMismatchException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Equal(new[] { Bias, Weight }, error.UnexpectedKeys);
    }

    [Fact]
    public void A_module_that_is_not_trainable_in_this_model_still_gets_the_saved_copy_and_stays_frozen()
    {
        using var trained = Trained(8);
        string dir = _dir.File("adapter");
        AdapterFiles.Save(trained, dir);
        using var input = randn(4, 8);
        using var expected = Output(trained, input);

        using var other = new MsFrozenHeadClassifier();
        ModelWeights.Load(other, BaseOf(8));
        var result = AdapterFiles.Load(other, dir);
        Assert.Equal(new[] { "classifier" }, result.ModulesToSave);
        using var actual = Output(other, input);
        AssertBitwiseEqual(expected, actual);
        other.ApplyTrainability();
        Assert.All(other.Classifier.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void Named_adapters_share_the_one_head_and_the_last_load_sets_it()
    {
        string defaultDir = _dir.File("default"), otherDir = _dir.File("other");
        Tensor headDefault, headOther;
        using (var model = Trained(9))
        {
            AdapterFiles.Save(model, defaultDir);
            headDefault = model.Classifier.parameters().First().detach().clone();
            using (no_grad())
            {
                foreach (var p in model.Classifier.parameters()) p.add_(1.0);
            }
            model.SetActiveAdapter("other");
            AdapterFiles.Save(model, otherDir, "other");
            headOther = model.Classifier.parameters().First().detach().clone();
        }

        // Each file holds the head as it was when that adapter was saved.
        using (var saved = Read(defaultDir, Weight)) AssertBitwiseEqual(headDefault, saved);
        using (var saved = Read(otherDir, Weight)) AssertBitwiseEqual(headOther, saved);

        using var fresh = new MsClassifier();
        AdapterFiles.Load(fresh, defaultDir);
        AssertBitwiseEqual(headDefault, fresh.Classifier.parameters().First());
        AdapterFiles.Load(fresh, otherDir, "other");
        AssertBitwiseEqual(headOther, fresh.Classifier.parameters().First());

        // Switching the active adapter does not switch heads: reload the adapter's directory to get its head back.
        fresh.SetActiveAdapter("default");
        AssertBitwiseEqual(headOther, fresh.Classifier.parameters().First());
        AdapterFiles.Load(fresh, defaultDir);
        AssertBitwiseEqual(headDefault, fresh.Classifier.parameters().First());
        headDefault.Dispose();
        headOther.Dispose();
    }

    [Fact]
    public void Prompt_tuning_writes_the_head_under_peft_prompt_learning_keys_and_reloads()
    {
        string dir = _dir.File("prompt");
        manual_seed(10);
        using var model = new MsPromptClassifier();
        ModelWeights.Save(model, BaseOf(10));
        RandomizeAdapters(model);
        using (no_grad())
        {
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.StartsWith("head.", StringComparison.Ordinal))) p.add_(0.5);
        }
        AdapterFiles.Save(model, dir);
        Assert.Equal(new[] { "head" }, Config(dir)["modules_to_save"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(new[] { "base_model.head.bias", "base_model.head.weight", "prompt_embeddings" }, Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)));

        using var ids = tensor(new long[] { 1, 2, 3, 4, 5, 6 }, new long[] { 2, 3 });
        using var expected = Output(model, ids);
        using var fresh = new MsPromptClassifier();
        ModelWeights.Load(fresh, BaseOf(10));
        AdapterFiles.Load(fresh, dir);
        using var actual = Output(fresh, ids);
        AssertBitwiseEqual(expected, actual);
    }

    [Fact]
    public void A_trainable_bare_parameter_cannot_be_saved_in_peft_format_unless_left_out()
    {
        using var model = new MsTrainableParameter();
        var error = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, _dir.File("p")));
        Assert.Contains("'scale'", error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir.File("p")));

        AdapterFiles.Save(model, _dir.File("p"), options: new AdapterSaveOptions { SaveTrainableMembers = false });
        Assert.Null(Config(_dir.File("p"))["modules_to_save"]);
    }

    [Fact]
    public void A_short_name_that_would_also_select_another_module_is_written_as_the_peft_model_name()
    {
        string dir = _dir.File("two");
        manual_seed(13);
        using var model = new MsTwoHeads();
        ModelWeights.Save(model, BaseOf(13));
        RandomizeAdapters(model);
        using (no_grad())
        {
            foreach (var (_, p) in model.named_parameters().Where(p => p.name.StartsWith("head.", StringComparison.Ordinal))) p.add_(1.0);
        }
        AdapterFiles.Save(model, dir);
        // "head" would also select lm_head (a plain suffix); the PeftModel name selects the head alone.
        Assert.Equal(new[] { "base_model.model.head" }, Config(dir)["modules_to_save"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(new[] { "base_model.model.dense.lora_A.weight", "base_model.model.dense.lora_B.weight", "base_model.model.head.bias", "base_model.model.head.weight" },
            Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)));

        using var input = randn(3, 4);
        using var expected = Output(model, input);
        using var fresh = new MsTwoHeads();
        ModelWeights.Load(fresh, BaseOf(13));
        Assert.Equal(new[] { "head" }, AdapterFiles.Load(fresh, dir).ModulesToSave);
        using var actual = Output(fresh, input);
        AssertBitwiseEqual(expected, actual);
    }

    [Fact]
    public void A_trainable_member_under_freeze_is_not_saved_and_a_nested_one_is_named_by_its_path()
    {
        string dir = _dir.File("nested");
        using var model = new MsNested();
        AdapterFiles.Save(model, dir);
        // "inner" alone would also select frozen.inner, so the entry is the path.
        Assert.Equal(new[] { "block.inner" }, Config(dir)["modules_to_save"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(new[] { "base_model.model.block.inner.bias", "base_model.model.block.inner.weight", "base_model.model.dense.lora_A.weight", "base_model.model.dense.lora_B.weight" },
            Keys(Path.Combine(dir, AdapterFiles.WeightsFileName)));
        Assert.Equal(new[] { "block.inner" }, AdapterFiles.Load(model, dir).ModulesToSave);
    }

    [Fact]
    public void A_modules_to_save_string_is_refused_with_the_field_named()
    {
        string dir = SaveTrained(12);
        EditConfig(dir, c => c["modules_to_save"] = "classifier");
        using var fresh = new MsClassifier();
        var error = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, dir));
        Assert.Contains("modules_to_save", error.Message, StringComparison.Ordinal);
    }
}
