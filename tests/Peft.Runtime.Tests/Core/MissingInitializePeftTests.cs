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
    }
}
