using Microsoft.CodeAnalysis;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Tests;

/// <summary>Facts about <see cref="PeftParser"/> that the generator relies on.</summary>
public class ParserTests
{
    private const string LayerSource = """
        #pragma warning disable CS1591, CS8618, CS0169
        using Peft;
        using static TorchSharp.torch;
        using static TorchSharp.torch.nn;

        namespace Checks
        {
            public sealed partial class Layers : Module<Tensor, Tensor>
            {
                private const int In = 16;
                private const long Out = In * 2;

                [LoRA] private Module<Tensor, Tensor> q_proj;
                [LoRA] private Module<Tensor, Tensor> k_proj = Linear(In, Out);
                [LoRA] private Module<Tensor, Tensor> v_proj;
                [LoRA] private Module<Tensor, Tensor> o_proj;
                [LoRA] private Module<Tensor, Tensor> dyn;
                [LoRA] private Module<Tensor, Tensor> both;
                [PromptTune] private Module<Tensor, Tensor> embed = Embedding(100, 8);
                private Module<Tensor, Tensor> act = ReLU();
                private Module<Tensor, Tensor> unset;
                private Tensor? mask;

                public Layers(int width) : base("Layers")
                {
                    q_proj = Linear(64, 32);
                    this.v_proj = Linear(inputSize: 16, outputSize: 8, hasBias: false);
                    o_proj = Linear(outputSize: 8, inputSize: Out);
                    dyn = Linear(width, 8);
                    both = Linear(width, width);
                }

                public override Tensor forward(Tensor x) => x;
            }
        }
        """;

    [Theory]
    [InlineData("q_proj", (int)LayerKind.Linear, 64L, 32L, true)]      // constructor assignment (hasBias defaults to true)
    [InlineData("k_proj", (int)LayerKind.Linear, 16L, 32L, true)]      // field initializer with const fields
    [InlineData("v_proj", (int)LayerKind.Linear, 16L, 8L, false)]      // this.x = ..., named arguments, hasBias: false
    [InlineData("o_proj", (int)LayerKind.Linear, 32L, 8L, true)]       // named arguments out of order
    [InlineData("dyn", (int)LayerKind.Linear, null, 8L, true)]         // a parameter is not a constant
    [InlineData("both", (int)LayerKind.Linear, null, null, true)]
    [InlineData("embed", (int)LayerKind.Embedding, 100L, 8L, null)]
    [InlineData("act", (int)LayerKind.Unknown, null, null, null)]      // another nn factory
    public void LayerInfoFromInitializerOrConstructor(string member, int kind, long? inFeatures, long? outFeatures, bool? hasBias)
    {
        var model = Parse(LayerSource, "Checks.Layers");

        var layer = model.Members.Single(m => m.Name == member).Layer;

        // Every Linear here is built without a dtype argument: the default dtype (PEFT0052 compares constant dtypes).
        string? dtype = (LayerKind)kind == LayerKind.Linear ? PeftParser.DefaultDType : null;
        Assert.Equal(new LayerInfo((LayerKind)kind, inFeatures, outFeatures, hasBias) { DType = dtype }, layer);
    }

    [Fact]
    public void NoLayerWhenNothingBuildsTheMember()
    {
        var model = Parse(LayerSource, "Checks.Layers");

        Assert.Null(model.Members.Single(m => m.Name == "unset").Layer);
    }

    [Fact]
    public void NullableTensorFieldIsABuffer()
    {
        var model = Parse(LayerSource, "Checks.Layers");

        Assert.Equal(ComponentKind.Buffer, model.Members.Single(m => m.Name == "mask").Component);
    }

    [Fact]
    public void MembersInDeclarationOrderAndDefaultsApplied()
    {
        var model = Parse(LayerSource, "Checks.Layers");

        Assert.Equal(
            new[] { "q_proj", "k_proj", "v_proj", "o_proj", "dyn", "both", "embed", "act", "unset", "mask" },
            model.Members.Select(m => m.Name));
        var lora = model.Members[0].Adapters.Single();
        Assert.Equal("LoRA", lora.Method);
        Assert.Equal("default", lora.AdapterName);
        Assert.Equal(8, lora.Int("rank"));
        Assert.Equal(8.0, lora.Double("alpha"));
        Assert.Equal(0.0, lora.Double("dropout"));
        Assert.False(lora.Bool("UseRsLora"));
        Assert.Equal(0, lora.Int("Init"));
        Assert.True(model.IsPartial);
        Assert.True(model.IsModule);
    }

    [Fact]
    public void MembersOfPartialDeclarationsInSeveralFilesKeepFileThenSourceOrder()
    {
        // The second file's members sit at smaller offsets than the first file's: offsets alone would interleave them.
        const string first = """
            #pragma warning disable CS1591
            using Peft;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;

            namespace Checks
            {
                public sealed partial class Split : Module<Tensor, Tensor>
                {
                    public Split() : base("Split") { }
                    public override Tensor forward(Tensor x) => x;

                    [LoRA] private Module<Tensor, Tensor> a = Linear(4, 4);
                    private Module<Tensor, Tensor> b = Linear(4, 4);
                }
            }
            """;
        const string second = """
            namespace Checks
            {
                using static TorchSharp.torch;
                using static TorchSharp.torch.nn;
                public sealed partial class Split
                {
                    private Module<Tensor, Tensor> c = Linear(4, 4);
                    private Module<Tensor, Tensor> d = Linear(4, 4);
                }
            }
            """;

        var compilation = TestCompilation.Create(first, second);
        var model = PeftParser.Parse(Type(compilation, "Checks.Split"), compilation, CancellationToken.None)!;

        Assert.Equal(new[] { "a", "b", "c", "d" }, model.Members.Select(m => m.Name));
    }

    [Theory]
    [InlineData("Checks.PlainDerived", false)]      // base is a module without PEFT declarations
    [InlineData("Checks.PeftDerived", true)]        // base gets a generated PeftDescriptor
    [InlineData("Checks.GrandChild", true)]         // ... further up the chain
    [InlineData("Checks.BrokenDerived", false)]     // base is not partial: nothing generated for it
    public void BaseHasPeftDescriptorOnlyWhenABaseGetsOne(string typeName, bool expected)
    {
        const string source = """
            #pragma warning disable CS1591
            using Peft;
            using static TorchSharp.torch;
            using static TorchSharp.torch.nn;

            namespace Checks
            {
                public abstract class PlainBase : Module<Tensor, Tensor> { protected PlainBase() : base("p") { } }
                public partial class PlainDerived : PlainBase
                {
                    [LoRA] private Module<Tensor, Tensor> a = Linear(4, 4);
                    public override Tensor forward(Tensor x) => a.call(x);
                }

                public abstract partial class PeftBase : Module<Tensor, Tensor>
                {
                    [Freeze] private Module<Tensor, Tensor> f = Linear(4, 4);
                    protected PeftBase() : base("p") { }
                    protected Tensor F(Tensor x) => f.call(x);
                }
                public partial class PeftDerived : PeftBase
                {
                    [LoRA] private Module<Tensor, Tensor> a = Linear(4, 4);
                    public override Tensor forward(Tensor x) => a.call(F(x));
                }
                public sealed partial class GrandChild : PeftDerived { [Trainable] private Module<Tensor, Tensor> g = Linear(4, 4); public Tensor G(Tensor x) => g.call(x); }

                public abstract class BrokenBase : Module<Tensor, Tensor>
                {
                    [LoRA] private Module<Tensor, Tensor> b = Linear(4, 4);
                    protected BrokenBase() : base("p") { }
                    protected Tensor B(Tensor x) => b.call(x);
                }
                public partial class BrokenDerived : BrokenBase
                {
                    [LoRA] private Module<Tensor, Tensor> a = Linear(4, 4);
                    public override Tensor forward(Tensor x) => a.call(B(x));
                }
            }
            """;

        var model = Parse(source, typeName);

        Assert.Equal(expected, model.BaseHasPeftDescriptor);
    }

    [Fact]
    public void ParseObservesCancellation()
    {
        var compilation = TestCompilation.Create(LayerSource);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        Assert.ThrowsAny<OperationCanceledException>(() => PeftParser.Parse(Type(compilation, "Checks.Layers"), compilation, cancelled.Token));
    }

    private static PeftClassModel Parse(string source, string typeName)
    {
        var compilation = TestCompilation.Create(source);
        Assert.DoesNotContain(compilation.GetDiagnostics(), d => d.Severity == DiagnosticSeverity.Error);
        var model = PeftParser.Parse(Type(compilation, typeName), compilation, CancellationToken.None);
        Assert.NotNull(model);
        return model;
    }

    private static INamedTypeSymbol Type(Compilation compilation, string metadataName)
        => compilation.GetTypeByMetadataName(metadataName) ?? throw new InvalidOperationException(metadataName + " not found");
}
