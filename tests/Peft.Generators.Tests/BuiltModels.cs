using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Generators.Tests;

/// <summary>
/// A model compiled by this project's own MSBuild build with the generator as an analyzer: without the generated
/// InitializePeft() and IPeftModule this file does not compile.
/// </summary>
internal sealed partial class BuiltModel : Module<Tensor, Tensor>
{
    [LoRA(rank: 4, alpha: 8, Name = "task")] private Module<Tensor, Tensor> proj = Linear(8, 8);
    [Trainable] private Module<Tensor, Tensor> head = Linear(8, 2);
    private Module<Tensor, Tensor> body = Linear(8, 8);

    public BuiltModel() : base(nameof(BuiltModel)) => InitializePeft();

    public override Tensor forward(Tensor x) => head.call(proj.call(body.call(x)));
}

/// <summary>The generator inside a real build: the model in <see cref="BuiltModel"/> works end to end.</summary>
public class MsBuildIntegrationTests
{
    [Fact]
    public void GeneratedCodeFromTheBuildWorks()
    {
        using var model = new BuiltModel();

        IPeftModule peft = model;
        Assert.Equal("Peft.Generators.Tests.BuiltModel", peft.PeftDescriptor.TypeName);
        Assert.Equal(new[] { "proj", "head", "body" }, model.named_children().Select(c => c.name));
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order(StringComparer.Ordinal);
        Assert.Equal(new[] { "head.bias", "head.weight", "proj.task.lora_A.weight", "proj.task.lora_B.weight" }, trainable);
        using var y = model.call(randn(3, 8));
        Assert.Equal(new long[] { 3, 2 }, y.shape);
    }
}
