using Peft.Serialization;
using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Runtime.Tests.Core;

#pragma warning disable PEFT0013 // deliberately never calls InitializePeft(): the runtime must catch it
public sealed partial class ForgotInitializePeft : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);

    public ForgotInitializePeft() : base(nameof(ForgotInitializePeft)) => RegisterComponents();

    public override Tensor forward(Tensor x) => proj.call(x);
}
#pragma warning restore PEFT0013

public sealed partial class CallsInitializePeft : Module<Tensor, Tensor>
{
    [LoRA(rank: 2)] private Module<Tensor, Tensor> proj = Linear(8, 8);

    public CallsInitializePeft() : base(nameof(CallsInitializePeft)) => InitializePeft();

    public override Tensor forward(Tensor x) => proj.call(x);
}

public class MissingInitializePeftTests
{
    [Fact]
    public void TrainingAModelWhoseAdaptersWereNeverCreatedFailsWithTheFix()
    {
        using var model = new ForgotInitializePeft();
        // Without the guard this would return the base weight and bias: silent full fine-tuning.
        var ex = Assert.Throws<PeftConfigurationException>(() => model.TrainableParameters().ToList());
        Assert.Contains("ForgotInitializePeft", ex.Message);
        Assert.Contains("'proj'", ex.Message);
        Assert.Contains("Call InitializePeft()", ex.Message);
        Assert.Equal("proj", ex.MemberName);
        Assert.Throws<PeftConfigurationException>(() => model.GetTrainableSummary());
    }

    [Fact]
    public void AModelThatCallsInitializePeftTrainsOnlyItsAdapter()
    {
        using var model = new CallsInitializePeft();
        var trainable = model.TrainableParameters().ToList();
        Assert.Equal(2 * (8 + 8), trainable.Sum(p => p.numel()));

        using var trainer = new AdapterTrainer(model, new TrainingOptions { TotalSteps = 1 });
        Assert.Equal(2 * (8 + 8), trainer.Parameters.Sum(p => p.numel()));
    }

    /// <summary>Every entry point that would otherwise act on the plain layers fails the same way, naming the class and the fix.</summary>
    public static TheoryData<string> EntryPoints() => new()
    {
        "TrainableParameters", "GetTrainableSummary", "AdapterTrainer(model)", "Merge", "ApplyTargets", "ResolveTargets",
        "LoadAdapterWithTargets", "AdapterFiles.Save", "AdapterFiles.Load",
    };

    [Theory]
    [MemberData(nameof(EntryPoints))]
    public void EveryEntryPointNamesTheClassAndTheFix(string entryPoint)
    {
        // An adapter directory that fits the class, written from an initialized twin.
        string directory = Path.Combine(Path.GetTempPath(), "peft-missing-init-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var twin = new CallsInitializePeft()) AdapterFiles.Save(twin, directory);
            using var model = new ForgotInitializePeft();
            var before = model.parameters().Select(p => (p.requires_grad, Value: p.detach().clone())).ToList();
            Action act = entryPoint switch
            {
                "TrainableParameters" => () => model.TrainableParameters().ToList(),
                "GetTrainableSummary" => () => model.GetTrainableSummary(),
                "AdapterTrainer(model)" => () => new AdapterTrainer(model, new TrainingOptions { TotalSteps = 1 }).Dispose(),
                "Merge" => () => model.Merge(),
                "ApplyTargets" => () => model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 2))),
                "ResolveTargets" => () => model.ResolveTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 2))),
                "LoadAdapterWithTargets" => () => model.LoadAdapterWithTargets(directory),
                "AdapterFiles.Save" => () => AdapterFiles.Save(model, Path.Combine(directory, "out")),
                "AdapterFiles.Load" => () => AdapterFiles.Load(model, directory),
                _ => throw new ArgumentOutOfRangeException(nameof(entryPoint)),
            };

            var ex = Assert.Throws<PeftConfigurationException>(act);
            Assert.Contains("ForgotInitializePeft declares a LoRA adapter on 'proj'", ex.Message);
            Assert.Contains("Call InitializePeft() at the end of every constructor of Peft.Runtime.Tests.Core.ForgotInitializePeft", ex.Message);
            Assert.Contains("PEFT0013", ex.Message);
            Assert.Equal("proj", ex.MemberName);

            // Nothing changed: no wrapper, no adapter, trainability and values as they were.
            Assert.Empty(model.AdaptedLayers());
            Assert.False(Directory.Exists(Path.Combine(directory, "out")));
            var after = model.parameters().ToList();
            Assert.Equal(before.Count, after.Count);
            for (int i = 0; i < after.Count; i++)
            {
                Assert.Equal(before[i].requires_grad, after[i].requires_grad);
                Assert.True(before[i].Value.eq(after[i]).all().item<bool>());
            }
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void AModelWithoutAdaptersSaysHowToAddOne()
    {
        using var model = new PlainModule();
        var ex = Assert.Throws<PeftConfigurationException>(() => AdapterFiles.Save(model, Path.Combine(Path.GetTempPath(), "peft-none-" + Guid.NewGuid().ToString("N"))));
        Assert.Contains("no adapter named 'default'", ex.Message);
        Assert.Contains("InitializePeft()", ex.Message);
        Assert.Contains("ApplyTargets", ex.Message);
    }

    private sealed class PlainModule : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> proj = Linear(4, 4);

        public PlainModule() : base(nameof(PlainModule)) => RegisterComponents();

        public override Tensor forward(Tensor x) => proj.call(x);
    }
}
