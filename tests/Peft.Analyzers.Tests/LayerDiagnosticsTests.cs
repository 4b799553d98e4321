using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0004, PEFT0005, PEFT0006: an adapter that does not fit the layer it is put on.</summary>
public class LayerDiagnosticsTests
{
    [Fact]
    public Task LoRARankAboveMinOfConstantSizes_InFieldInitializer_ReportsPEFT0004WithSizes()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA({|#0:rank: 48|})] private Module<Tensor, Tensor> q_proj = Linear(64, 32);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0004").WithLocation(0).WithArguments("LoRA", "48", "q_proj", "64", "32")
                .WithMessage("[LoRA] rank 48 is larger than min(in, out) of 'q_proj', a Linear(64, 32); use a rank of at most min(in, out)"));

    [Fact]
    public Task LoRADefaultRankAboveMin_InConstructorAssignment_ReportsPEFT0004OnTheAttribute()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [{|#0:LoRA|}] private Module<Tensor, Tensor> q_proj;

                public Attention() : base(nameof(Attention))
                {
                    q_proj = Linear(4, 64);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0004").WithLocation(0).WithArguments("LoRA", "8", "q_proj", "4", "64"));

    [Fact]
    public Task LoRARankEqualToMin_OrSizesNotConstant_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA(rank: 32)] private Module<Tensor, Tensor> q_proj = Linear(64, 32);
                [LoRA(rank: 512)] private Module<Tensor, Tensor> v_proj;

                public Attention(int dim) : base(nameof(Attention))
                {
                    v_proj = Linear(dim, dim);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => v_proj.call(q_proj.call(x));
            }
            """);

    [Fact]
    public Task KroneckerRankAboveMin_IsNotPEFT0004()
        // LoKr uses full factor matrices when the rank is large; PEFT accepts it and so do we.
        => PeftAnalyzerTest.VerifyAsync(Module("""
            [Kronecker(rank: 48)] private Module<Tensor, Tensor> q_proj = Linear(64, 32);
            """));

    [Fact]
    public Task KroneckerFactorNotDividingASize_ReportsPEFT0005WithSizesAndFactor()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [Kronecker(4, {|#0:Factor = 3|})] private Module<Tensor, Tensor> v_proj = Linear(64, 48);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0005").WithLocation(0).WithArguments("3", "v_proj", "64", "48")
                .WithMessage("Kronecker Factor 3 does not divide both sizes of 'v_proj' (in 64, out 48); use a common divisor of both, or -1 for automatic factorization"));

    [Fact]
    public Task KroneckerFactorZero_ReportsPEFT0005EvenWithoutConstantSizes()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [Kronecker(4, {|#0:Factor = 0|})] private Module<Tensor, Tensor> v_proj;

                public Attention(int dim) : base(nameof(Attention))
                {
                    v_proj = Linear(dim, dim);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => v_proj.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0005").WithLocation(0).WithArguments("0", "v_proj", "?", "?"));

    [Fact]
    public Task KroneckerFactorDividingBothSizes_AutomaticFactor_OrUnknownSizes_IsAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [Kronecker(4, Factor = 16)] private Module<Tensor, Tensor> q_proj = Linear(64, 48);
                [Kronecker(4, Factor = -1)] private Module<Tensor, Tensor> k_proj = Linear(63, 48);
                [Kronecker(4, Factor = 3)] private Module<Tensor, Tensor> v_proj;

                public Attention(int dim) : base(nameof(Attention))
                {
                    v_proj = Linear(dim, dim);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => x;
            }
            """);

    [Fact]
    public Task LoRAOnEmbeddingOrConv_ReportsPEFT0006OnTheAttribute()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:LoRA(8)|}] private Module<Tensor, Tensor> embed = Embedding(1000, 64);
                [{|#1:Kronecker(4, Name = "lokr")|}] private Module<Tensor, Tensor> conv = Conv2d(3, 8, 3);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0)
                .WithMessage("[LoRA] on 'embed' needs a Linear layer, but it is built with Embedding(...)"),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(1)
                .WithArguments("Kronecker", "conv", "a Linear layer", "it is built with a TorchSharp layer other than Linear, Embedding or LayerNorm"));

    [Fact]
    public Task PromptTuneOnLinear_ReportsPEFT0006()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [{|#0:PromptTune(10)|}] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0)
                .WithArguments("PromptTune", "q_proj", "an Embedding layer", "it is built with Linear(...)"));

    [Fact]
    public Task PromptTuneAndLoRAOnOneMemberOfUnknownLayer_ReportsPEFT0006OnThePromptTune()
        => PeftAnalyzerTest.VerifyAsync(
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA(Name = "lora"), {|#0:PromptTune(Name = "prompt")|}] private Module<Tensor, Tensor> layer;

                public Attention(Module<Tensor, Tensor> layer) : base(nameof(Attention))
                {
                    this.layer = layer;
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => layer.call(x);
            }
            """,
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0)
                .WithArguments("PromptTune", "layer", "an Embedding layer", "the member also has [LoRA], which needs a Linear layer"));

    [Fact]
    public Task AdapterOnSealedLinearTypedField_ReportsPEFT0006OnTheDeclaredType()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA] private {|#0:TorchSharp.Modules.Linear|} q_proj = Linear(64, 64);
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0)
                .WithMessage("[LoRA] on 'q_proj' needs a member of type Module<Tensor, Tensor> that can hold the adapter wrapper, but it is declared as 'TorchSharp.Modules.Linear'"));

    [Fact]
    public Task AdapterOnTensorOrParameter_ReportsPEFT0006OnTheDeclaredType()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA] private {|#0:Tensor|} weight = zeros(4, 4);
                [LoRA(Name = "p")] public {|#1:TorchSharp.Modules.Parameter|} Scale { get; set; } = new TorchSharp.Modules.Parameter(ones(4));
                """),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(0)
                .WithArguments("LoRA", "weight", "a member of type Module<Tensor, Tensor> that can hold the adapter wrapper", "it is declared as 'TorchSharp.torch.Tensor'"),
            PeftAnalyzerTest.Diagnostic("PEFT0006").WithLocation(1)
                .WithArguments("LoRA", "Scale", "a member of type Module<Tensor, Tensor> that can hold the adapter wrapper", "it is declared as 'TorchSharp.Modules.Parameter'"));

    [Fact]
    public Task RightLayersAndWrapperTypes_AreAccepted()
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class Model : Module<Tensor, Tensor>
            {
                [PromptTune(20, Name = "prompt")] private Module<Tensor, Tensor> embed = Embedding(1000, 64);
                [LoRA(8)] private Module<Tensor, Tensor>? q_proj = Linear(64, 64);
                [LoRA(8)] public Module<Tensor, Tensor> V { get; set; }
                [LoRA(8)] private Module<Tensor, Tensor> o_proj = MakeLayer();

                public Model() : base(nameof(Model))
                {
                    V = Linear(64, 64);
                    InitializePeft();
                }

                private static Module<Tensor, Tensor> MakeLayer() => Linear(64, 64);

                public override Tensor forward(Tensor x) => x;
            }
            """);
}
