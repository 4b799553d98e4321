using Peft.Training;
using Peft.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.VBLoRA;

/// <summary>Two VB-LoRA layers sharing one bank, for training through <see cref="AdapterTrainer"/>.</summary>
public sealed partial class VBLoRATrainNet : Module<Tensor, Tensor>
{
    [VBLoRA(2, 6, 4, InitVectorBankBound = 0.3)] private Module<Tensor, Tensor> fc1 = Linear(8, 4);
    [VBLoRA(2, 6, 4, InitVectorBankBound = 0.3)] private Module<Tensor, Tensor> fc2 = Linear(4, 4);

    public VBLoRATrainNet() : base(nameof(VBLoRATrainNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.call(functional.tanh(fc1.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>The shared bank through training: AdamW moves it, and a checkpoint (which names it
/// <c>base_model.vblora_vector_bank.default</c>) resumes the run bit for bit.</summary>
public sealed class VBLoRATrainingTests : IDisposable
{
    private const int TotalSteps = 8;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "peft-vblora-ckpt-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private sealed class Run : IDisposable
    {
        public Run(string? resumeFrom = null)
        {
            Seeding.SetSeed(5);
            Model = new VBLoRATrainNet();
            Sampler = new Generator(77);
            Trainer = new AdapterTrainer(Model.TrainableParameters(), new TrainingOptions { TotalSteps = TotalSteps, LearningRate = 1e-2, WarmupSteps = 1, Seed = 5 });
            if (resumeFrom is not null) CheckpointStore.Load(resumeFrom, Model, Trainer, Sampler);
        }

        public VBLoRATrainNet Model { get; }
        public Generator Sampler { get; }
        public AdapterTrainer Trainer { get; }
        public List<double> Losses { get; } = new();

        public Tensor Bank => ((VBLoRAAdapter)Model.AdaptedLayers().First().Layer.GetAdapter("default")).Bank;

        public void TrainUntil(int step)
        {
            while (Trainer.Step < step)
            {
                using var x = torch.randn(new long[] { 6, 8 }, generator: Sampler);
                using var y = torch.randn(new long[] { 6, 4 }, generator: Sampler);
                Losses.Add(Trainer.TrainStep(() => functional.mse_loss(Model.call(x), y)).Loss);
            }
        }

        public void Dispose()
        {
            Trainer.Dispose();
            Model.Dispose();
            Sampler.Dispose();
        }
    }

    [Fact]
    public void TheTrainerMovesTheBankAndACheckpointResumesItBitForBit()
    {
        using var full = new Run();
        using var initial = full.Bank.detach().clone();
        Assert.Contains(full.Trainer.Parameters, p => ReferenceEquals(p, full.Bank));
        full.TrainUntil(TotalSteps);
        Assert.True((full.Bank - initial).abs().max().item<float>() > 1e-4);

        var store = new CheckpointStore(_root);
        using (var first = new Run())
        {
            first.TrainUntil(3);
            store.Save(first.Model, first.Trainer, dataPosition: first.Trainer.Step, first.Sampler, first.Losses[^1]);
        }

        Assert.Contains("base_model.vblora_vector_bank.default", CheckpointStore.ReadManifest(store.Latest()!).Parameters);
        using var resumed = new Run(store.Latest());
        resumed.TrainUntil(TotalSteps);
        Assert.Equal(full.Losses.Skip(3), resumed.Losses);
        using var difference = (full.Bank - resumed.Bank).abs().max();
        Assert.Equal(0f, difference.item<float>());
    }
}
