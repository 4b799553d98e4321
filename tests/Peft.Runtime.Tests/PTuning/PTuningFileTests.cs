using System.Text.Json.Nodes;
using Peft.Serialization;
using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.PTuning;

/// <summary>An input embedding with a P-tuning prompt (MLP, h = 6) declared by attribute, and a linear head.</summary>
public sealed partial class PTuningNet : Module<Tensor, Tensor>
{
    [PTuning(3, 6)] private Module<Tensor, Tensor> embed = Embedding(10, 4);
    private Module<Tensor, Tensor> head = Linear(4, 2);

    public PTuningNet() : base(nameof(PTuningNet)) => InitializePeft();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return head.call(embed.call(ids)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// P-tuning's files as PEFT writes and reads them (<c>P_TUNING</c>: <c>prompt_embeddings</c> is the encoder's output, the
/// config PromptEncoderConfig's fields), loading into an inference-mode adapter that gives the same prompt, the refused load
/// back into a training adapter, and training resumed from a trainer checkpoint, which keeps the encoder.
/// </summary>
public sealed class PTuningFileTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "peft-ptuning-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    private sealed class Holder : Module<Tensor, Tensor>
    {
        public Holder(AdaptedEmbedding embed) : base(nameof(Holder))
        {
            Embed = embed;
            register_module("embed", embed);
        }

        public AdaptedEmbedding Embed { get; }

        public override Tensor forward(Tensor input) => Embed.forward(input);
    }

    [Fact]
    public void TheFileHoldsTheEncodersOutputAndPeftsConfigAndLoadsAsTheSamePromptInInferenceMode()
    {
        using var model = new Holder(PTuningTests.Embedding());
        PTuningTests.HandAdapter(model.Embed);
        AdapterFiles.Save(model, _dir, options: new AdapterSaveOptions { TaskType = "CAUSAL_LM" });

        using (var reader = SafetensorsFile.Open(Path.Combine(_dir, AdapterFiles.WeightsFileName)))
        {
            Assert.Equal(new[] { "prompt_embeddings" }, reader.Tensors.Select(t => t.Name).ToArray());
            using var saved = reader.ReadTensor("prompt_embeddings");
            Assert.Equal(new double[] { 2.5, 2.5, 4.5, 2 }, saved.data<double>().ToArray());   // the hand-computed encoder output
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal("P_TUNING", config["peft_type"]!.GetValue<string>());
        Assert.Equal(2, config["num_virtual_tokens"]!.GetValue<int>());
        Assert.Equal(2, config["token_dim"]!.GetValue<int>());
        Assert.Equal("MLP", config["encoder_reparameterization_type"]!.GetValue<string>());
        Assert.Equal(2, config["encoder_hidden_size"]!.GetValue<int>());
        Assert.Equal(2, config["encoder_num_layers"]!.GetValue<int>());
        Assert.Equal(0.0, config["encoder_dropout"]!.GetValue<double>());
        Assert.True(config["inference_mode"]!.GetValue<bool>());

        using var fresh = new Holder(AdaptedEmbedding.Wrap(nn.Embedding(6, 2, dtype: ScalarType.Float64), "embed"));
        using (torch.no_grad()) fresh.Embed.Weight.copy_(model.Embed.Weight);
        AdapterFiles.Load(fresh, _dir);
        var loaded = (PTuningAdapter)fresh.Embed.GetAdapter("default");
        Assert.True(loaded.Options.InferenceMode);
        Assert.False(loaded.Table.requires_grad);
        using var ids = torch.tensor(new long[] { 3, 0 }, new long[] { 1, 2 });
        using var y0 = model.call(ids);
        using var y1 = fresh.call(ids);
        Assert.True(y0.Equals(y1));
    }

    [Fact]
    public void LoadingAFileBackIntoATrainingAdapterIsRefusedNamingTheFixesAndChangesNothing()
    {
        using var model = new Holder(PTuningTests.Embedding());
        var adapter = PTuningTests.HandAdapter(model.Embed);
        AdapterFiles.Save(model, _dir);
        var before = adapter.parameters().Select(p => p.detach().clone()).ToList();
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(model, _dir));
        Assert.Contains("'default' on 'embed' (PTuning)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("prompt_embeddings computed from its parameters", ex.Message, StringComparison.Ordinal);
        Assert.Contains("new adapter name", ex.Message, StringComparison.Ordinal);
        Assert.Contains("trainer checkpoint", ex.Message, StringComparison.Ordinal);
        Assert.All(adapter.parameters().Zip(before), pair => Assert.True(pair.First.Equals(pair.Second)));

        // Under a new name the file is created as PEFT loads it: inference mode, the same prompt.
        AdapterFiles.Load(model, _dir, "loaded");
        var loaded = (PTuningAdapter)model.Embed.GetAdapter("loaded");
        using var prompt = ((IPrefixAdapter)adapter).ComputePrefix();
        Assert.True(loaded.Table.Equals(prompt));
    }

    [Fact]
    public void ABadFieldNamesTheFieldAndNothingIsCreated()
    {
        using var model = new Holder(PTuningTests.Embedding());
        PTuningTests.HandAdapter(model.Embed);
        AdapterFiles.Save(model, _dir);
        string path = Path.Combine(_dir, AdapterFiles.ConfigFileName);
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["encoder_reparameterization_type"] = "GRU";
        File.WriteAllText(path, config.ToJsonString());
        using var fresh = new Holder(AdaptedEmbedding.Wrap(nn.Embedding(6, 2, dtype: ScalarType.Float64), "embed"));
        var ex = Assert.Throws<AdapterFormatException>(() => AdapterFiles.Load(fresh, _dir));
        Assert.Contains("\"encoder_reparameterization_type\" must be \"MLP\" or \"LSTM\", found \"GRU\"", ex.Message, StringComparison.Ordinal);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Empty(fresh.AdapterNames());
    }

    [Fact]
    public void ATrainerCheckpointKeepsTheEncoderAndResumesBitForBit()
    {
        const int total = 6;
        string root = Path.Combine(_dir, "ckpt");
        (PTuningNet Model, AdapterTrainer Trainer, Generator Sampler) Start(string? resume)
        {
            Seeding.SetSeed(9);
            var model = new PTuningNet();
            var sampler = new Generator(21);
            var trainer = new AdapterTrainer(model.TrainableParameters(), new TrainingOptions { TotalSteps = total, LearningRate = 1e-2, WarmupSteps = 1, Seed = 9 });
            if (resume is not null) CheckpointStore.Load(resume, model, trainer, sampler);
            return (model, trainer, sampler);
        }

        List<double> Train((PTuningNet Model, AdapterTrainer Trainer, Generator Sampler) run, int until)
        {
            var losses = new List<double>();
            while (run.Trainer.Step < until)
            {
                using var ids = torch.randint(0, 10, new long[] { 4, 5 }, generator: run.Sampler);
                using var target = torch.randn(new long[] { 4, 8, 2 }, generator: run.Sampler);
                losses.Add(run.Trainer.TrainStep(() => functional.mse_loss(run.Model.call(ids), target)).Loss);
            }

            return losses;
        }

        var full = Start(null);
        var encoder = (PTuningAdapter)full.Model.AdaptedLayers().Single().Layer.GetAdapter("default");
        Assert.Equal(encoder.parameters().Count(), full.Trainer.Parameters.Count);   // the encoder trains, the base and head do not
        var fullLosses = Train(full, total);

        var store = new CheckpointStore(root);
        var first = Start(null);
        Train(first, 3);
        store.Save(first.Model, first.Trainer, first.Trainer.Step, first.Sampler);
        var names = CheckpointStore.ReadManifest(store.Latest()!).Parameters;
        Assert.Contains("embed.default.mlp_head.4.weight", names);
        Assert.Contains("embed.default.embedding.weight", names);

        var resumed = Start(store.Latest());
        var resumedLosses = Train(resumed, total);
        Assert.Equal(fullLosses.Skip(3), resumedLosses);
        var resumedEncoder = (PTuningAdapter)resumed.Model.AdaptedLayers().Single().Layer.GetAdapter("default");
        foreach (var (a, b) in encoder.parameters().Zip(resumedEncoder.parameters())) Assert.True(a.Equals(b));
        foreach (var run in new[] { full, first, resumed })
        {
            run.Trainer.Dispose();
            run.Model.Dispose();
            run.Sampler.Dispose();
        }
    }
}
