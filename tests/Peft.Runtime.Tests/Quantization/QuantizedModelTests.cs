using Peft.Runtime.Tests.Core;
using Peft.Runtime.Tests.Targets;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Quantization;

/// <summary>QLoRA at model level: quantize every adapted linear layer, train LoRA on top, export dense.</summary>
public class QuantizedModelTests
{
    [Fact]
    public void QuantizeTrainThenDequantizeAndMergeToADenseModel()
    {
        torch.manual_seed(21);
        var model = new TargetBlock();
        model.ApplyTargets(new PeftTargets(TargetModules.Names("fc1", "fc2"), new LoRAOptions(Rank: 2, Alpha: 4)));
        var summary = model.QuantizeBase(QuantizationFormat.NF4);
        Assert.Equal(2, summary.Layers);
        Assert.Equal(4L * (8 * 16 + 16 * 8), summary.DenseBytes);
        Assert.Equal(QuantizedWeight.StorageBytesFor(QuantizationFormat.NF4, 16, 8) * 2, summary.QuantizedBytes);
        Assert.Empty(summary.Skipped);
        Assert.Contains(model.state_dict().Keys, k => k == "fc1.weight_nf4_codes");
        Assert.DoesNotContain(model.state_dict().Keys, k => k == "fc1.weight");

        // One step moves the LoRA factors only; the codes do not change.
        var trainable = model.TrainableParameters().ToList();
        Assert.All(trainable, p => Assert.True(p.requires_grad));
        Assert.Equal(4, trainable.Count);
        using var codesBefore = model.state_dict()["fc1.weight_nf4_codes"].clone();
        using var optimizer = torch.optim.SGD(trainable, 0.1);
        using var x = torch.randn(6, 8);
        using var target = torch.randn(6, 8);
        for (int i = 0; i < 3; i++)
        {
            optimizer.zero_grad();
            using var loss = (model.call(x) - target).square().mean();
            loss.backward();
            optimizer.step();
        }

        TensorAssert.Equal(codesBefore, model.state_dict()["fc1.weight_nf4_codes"]);
        using var adapted = model.call(x).detach();
        Assert.Equal(2, model.DequantizeBase());
        model.Merge();
        using var merged = model.call(x).detach();
        TensorAssert.Close(adapted, merged, 1e-5);
    }
}
