using Peft.Models.Bert;
using Peft.Models.Tests.Bert;
using Peft.Serialization;
using static Peft.Models.Tests.AdapterFormat.AdapterFormatSupport;
using static TorchSharp.torch;

namespace Peft.Models.Tests.AdapterFormat;

/// <summary>
/// The tiny BERT classifier (hidden 32, 2 layers, 2 labels) with LoRA rank 8, alpha 16 on PEFT's default targets query and
/// value (BertTargets.LoRA) and its [Trainable] classifier: its adapter file against PEFT's format for a SEQ_CLS
/// LoraConfig, head as modules_to_save, reloaded into the stock model (which declares no adapter).
/// </summary>
[Collection(TinyBert.Collection)]
public sealed class BertAdapterFormatTests : IDisposable
{
    private readonly string _root = TempDir("bert");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string BasePath => Path.Combine(_root, "base.safetensors");

    /// <summary>The model with its base weights (untrained classifier included) saved first, then LoRA on query/value with random values and a moved classifier.</summary>
    private BertForSequenceClassification Trained()
    {
        var model = TinyBert.Create(50);
        ModelWeights.Save(model, BasePath);
        model.ApplyTargets(new PeftTargets(BertTargets.LoRA, new LoRAOptions(Rank: 8, Alpha: 16)));
        RandomizeAdapters(model, 51);
        using (no_grad())
        {
            foreach (var p in model.Classifier.parameters()) p.add_(0.25);
        }
        return model;
    }

    /// <summary>A new stock model (no adapter) with the base weights of <see cref="Trained"/> (its classifier as before training).</summary>
    private BertForSequenceClassification Fresh()
    {
        var model = TinyBert.Create(55);
        ModelWeights.Load(model, BasePath);
        return model;
    }

    private string Save(BertForSequenceClassification model)
    {
        string dir = Path.Combine(_root, "adapter");
        AdapterFiles.Save(model, dir, options: new AdapterSaveOptions { TaskType = "SEQ_CLS" });
        return dir;
    }

    [Fact]
    public void LoRA_adapter_with_the_classifier_follows_peft_format_and_reloads_bitwise()
    {
        using var model = Trained();
        string dir = Save(model);

        var config = Config(dir, "LORA");
        Assert.Equal(new[] { "query", "value" }, Names(config["target_modules"]));
        Assert.Equal(8, (int?)config["r"]);
        Assert.Equal(16.0, (double?)config["lora_alpha"]);
        Assert.Equal("SEQ_CLS", (string?)config["task_type"]);
        Assert.Equal(new[] { "classifier" }, Names(config["modules_to_save"]));

        // LoRA keys plus the classifier's state dict under base_model.model.classifier (PEFT drops the in-memory
        // modules_to_save.default. segment on save).
        var expected = new Dictionary<string, long[]>
        {
            ["base_model.model.classifier.weight"] = [2, 32],
            ["base_model.model.classifier.bias"] = [2],
        };
        for (int layer = 0; layer < 2; layer++)
        {
            foreach (var target in new[] { "query", "value" })
            {
                string path = $"base_model.model.bert.encoder.layer.{layer}.attention.self.{target}.";
                expected[path + "lora_A.weight"] = [8, 32];
                expected[path + "lora_B.weight"] = [32, 8];
            }
        }
        AssertWeights(dir, expected);

        using var ids = TinyBert.RandomIds(52, 3, 6);
        using var logits = model.call(ids);
        using var fresh = Fresh();
        using (var before = fresh.call(ids)) Assert.False(before.allclose(logits), "the fresh model already gives the trained logits");
        var result = AdapterFiles.Load(fresh, dir);
        Assert.Equal(10, result.LoadedTensors);
        Assert.Equal(new[] { "classifier" }, result.ModulesToSave);
        using var reloaded = fresh.call(ids);
        Assert.True(BitwiseEqual(logits, reloaded), "the reloaded adapter and classifier give different logits");
    }

    [Fact]
    public void Load_failures_name_the_problem_and_leave_the_model_unchanged()
    {
        using var model = Trained();
        string dir = Save(model);
        // Into a model that has the adapter already, and into the stock model, where the load creates it and removes it on failure.
        foreach (var create in new Func<nn.Module>[] { () => TinyBert.CreateWithLoRA(53), () => TinyBert.Create(53) })
        {
            AssertLoadFailuresLeaveModelUnchanged(
                create,
                dir,
                AdapterNames.Default,
                rankKey: "base_model.model.bert.encoder.layer.0.attention.self.value.lora_B.weight",
                missingKey: "base_model.model.classifier.bias");
        }
    }

    [Fact]
    public void A_peft_seq_cls_config_naming_classifier_and_score_loads()
    {
        // PEFT's PeftModelForSequenceClassification extends modules_to_save with ["classifier", "score"] itself, so its
        // saved configs name both; a BERT model has only the classifier.
        using var model = Trained();
        string dir = Save(model);
        EditConfig(dir, c => c["modules_to_save"] = new System.Text.Json.Nodes.JsonArray("classifier", "score"));
        using var fresh = Fresh();
        Assert.Equal(new[] { "classifier" }, AdapterFiles.Load(fresh, dir).ModulesToSave);
    }
}
