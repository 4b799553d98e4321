using System.Reflection;
using Microsoft.CodeAnalysis;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Generators.Tests;

/// <summary>
/// The generated InitializePeft() runs against the real runtime: layers are wrapped, every member is registered
/// under its own name, and trainability follows the declarations.
/// </summary>
public class GeneratedCodeRunsTests
{
    [Fact]
    public void AttentionWrapsRegistersAndFreezes()
    {
        using var model = Create(Sources.Attention, "MyModels.Attention");

        var descriptor = ((IPeftModule)model).PeftDescriptor;
        Assert.Equal("MyModels.Attention", descriptor.TypeName);
        Assert.Equal(
            new[] { new PeftAdapterDeclaration("q_proj", "default", "LoRA"), new PeftAdapterDeclaration("v_proj", "default", "Kronecker") },
            descriptor.Adapters);

        Assert.Equal(new[] { "q_proj", "v_proj", "o_proj" }, model.named_children().Select(c => c.name));
        Assert.IsType<AdaptedLinear>(Child(model, "q_proj"));
        Assert.IsType<AdaptedLinear>(Child(model, "v_proj"));
        Assert.IsNotType<AdaptedLinear>(Child(model, "o_proj"));
        Assert.Contains("mask", model.named_buffers().Select(b => b.name));

        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.True(parameters["q_proj.default.lora_A.weight"].requires_grad);
        Assert.True(parameters["q_proj.default.lora_B.weight"].requires_grad);
        Assert.Contains(parameters, p => p.Key.StartsWith("v_proj.default.", StringComparison.Ordinal) && p.Value.requires_grad);
        Assert.False(parameters["q_proj.weight"].requires_grad);
        Assert.False(parameters["o_proj.weight"].requires_grad);
        Assert.False(parameters["scale"].requires_grad);

        using var x = randn(2, 64);
        using var y = ((nn.Module<Tensor, Tensor>)model).call(x);
        Assert.Equal(new long[] { 2, 64 }, y.shape);
    }

    [Fact]
    public void FreezeTrainableAndNullMembers()
    {
        using var model = Create(Sources.FreezeTrainable, "Classifier", false);

        var names = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad);
        Assert.DoesNotContain("bias", names.Keys);                 // null member: skipped
        Assert.True(names["head.weight"]);                         // [Trainable]
        Assert.True(names["proj.task.lora_A.weight"]);             // adapter
        Assert.False(names["proj.weight"]);                        // base of an adapted layer
        Assert.False(names["backbone.layer.weight"]);              // [Freeze] member over a [Freeze] class
        Assert.Equal(new[] { "backbone", "proj", "head" }, model.named_children().Select(c => c.name));

        using var withBias = Create(Sources.FreezeTrainable, "Classifier", true);
        Assert.Contains("bias", withBias.named_parameters().Select(p => p.name));
    }

    [Fact]
    public void PromptTuningWrapsTheEmbedding()
    {
        using var model = Create(Sources.PromptTuning, "MyModels.Prompts.PromptModel");

        var embedding = Assert.IsType<AdaptedEmbedding>(Child(model, "embed"));
        Assert.Equal(new[] { "default", "other" }, embedding.Adapters.Select(a => a.AdapterName));
    }

    [Fact]
    public void PropertiesAndNonGenericModuleMembers()
    {
        using var model = Create(Sources.Properties, "MyModels.Props.PropertyModel");

        Assert.Equal(new[] { "Query", "Key", "base" }, model.named_children().Select(c => c.name));
        Assert.IsType<AdaptedLinear>(Child(model, "Query"));
        Assert.IsType<AdaptedLinear>(Child(model, "Key"));
        using var y = ((nn.Module<Tensor, Tensor>)model).call(randn(3, 16));
        Assert.Equal(new long[] { 3, 16 }, y.shape);
    }

    [Fact]
    public void DerivedClassKeepsTheBaseDeclarations()
    {
        using var model = Create(Sources.Inheritance, "MyModels.Inheritance.DerivedBlock");

        var descriptor = ((IPeftModule)model).PeftDescriptor;
        Assert.Equal("MyModels.Inheritance.DerivedBlock", descriptor.TypeName);
        Assert.Equal(new[] { "head" }, descriptor.TrainableMembers);
        Assert.Equal(new[] { "norm" }, descriptor.FrozenMembers);
        Assert.Equal(new[] { "inner", "outer" }, descriptor.Adapters.Select(a => a.MemberName));
        Assert.Same(descriptor, ((IPeftModule)model).PeftDescriptor);

        var names = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad);
        Assert.True(names["head.weight"]);                 // [Trainable] in the base class
        Assert.True(names["inner.default.lora_A.weight"]);
        Assert.False(names["inner.weight"]);
        Assert.False(names["norm.weight"]);                // [Freeze] in the derived class
        Assert.Equal(new[] { "inner", "head", "outer", "norm" }, model.named_children().Select(c => c.name));
    }

    [Fact]
    public void AdaptableClassIsTargetedByTheGeneratedCode()
    {
        using var model = Create(Sources.Adaptable, "MyModels.Targets.FeedForward");
        var members = ((IPeftTargetable)model).PeftTargetMembers;
        Assert.Equal(new[] { "up", "gate", "down" }, members.Select(m => m.Name)); // act = ReLU() is no linear layer
        Assert.True(members[0].IsTargetable);
        Assert.True(members[1].IsTargetable);
        Assert.Contains("cannot hold the adapter wrapper", members[2].NotTargetableReason);

        var order = model.named_children().Select(c => c.name).ToList();
        using var x = randn(3, 16);
        using var before = ((nn.Module<Tensor, Tensor>)model).call(x);

        var adapted = model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 2)) with { Exclude = TargetModules.Names("down") });
        Assert.Equal(new[] { "up", "gate" }, adapted);
        Assert.IsType<AdaptedLinear>(Child(model, "up"));
        Assert.IsType<AdaptedLinear>(Child(model, "gate"));
        Assert.Equal(order, model.named_children().Select(c => c.name)); // replaced in place, registration order kept
        using var after = ((nn.Module<Tensor, Tensor>)model).call(x);
        Assert.True(after.allclose(before, rtol: 0, atol: 0), "LoRA starts at zero: the forward through the new wrappers is unchanged");
        Assert.Equal(2L * (16 + 32) * 2, model.GetTrainableSummary().TrainableParameters);

        var ex = Assert.Throws<PeftConfigurationException>(() => model.ApplyTargets(new PeftTargets(TargetModules.Names("down")) { AdapterName = "x" }));
        Assert.Contains("member 'down' is declared as 'TorchSharp.Modules.Linear'", ex.Message);
    }

    private static nn.Module Child(nn.Module model, string name) => model.named_children().Single(c => c.name == name).module;

    private static nn.Module Create(string source, string typeName, params object[] arguments)
    {
        var run = TestCompilation.Run(TestCompilation.Create(source));
        using var image = new MemoryStream();
        var emit = run.Output.Emit(image);
        Assert.True(emit.Success, TestCompilation.Describe(emit.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error)));
        var assembly = Assembly.Load(image.ToArray());
        var type = assembly.GetType(typeName, throwOnError: true)!;
        return (nn.Module)Activator.CreateInstance(type, arguments)!;
    }
}
