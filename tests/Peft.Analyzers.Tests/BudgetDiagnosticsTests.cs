using Peft.Analyzers.Tests.Infrastructure;
using static Peft.Analyzers.Tests.Infrastructure.PeftTestSetup;

namespace Peft.Analyzers.Tests;

/// <summary>PEFT0010 (over the PeftMaxTrainableParameters budget) and PEFT0011 (unparsable MSBuild property).</summary>
public class BudgetDiagnosticsTests
{
    private const string ExpectedForm =
        "a non-negative integer (decimal digits, optionally grouped with '_' or ',', e.g. 2000000, 2_000_000 or 2,000,000)";

    // LoRA r=8 on Linear(64, 64): 8 * (64 + 64) = 1,024 trainable parameters. The second adapter's layer comes from
    // a constructor parameter, so the compiler cannot count it.
    private const string OneCountableLoRA = """
        public sealed partial class {|#0:Attention|} : Module<Tensor, Tensor>
        {
            [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
            [LoRA(8)] private Module<Tensor, Tensor> v_proj;

            public Attention(long dim) : base(nameof(Attention))
            {
                v_proj = Linear(dim, dim);
                InitializePeft();
            }

            public override Tensor forward(Tensor x) => v_proj.call(q_proj.call(x));
        }
        """;

    [Fact]
    public Task OverBudget_ReportsPEFT0010OnTheClassWithTheComputedCount()
        => PeftAnalyzerTest.VerifyAsync(
            OneCountableLoRA,
            BudgetConfig("1000"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithMessage(
                "'Attention' has 1,024 trainable parameters (adapters and [Trainable] layers), over the PeftMaxTrainableParameters budget of 1,000; " +
                "members whose sizes are unknown at compile time are not counted (1 here)"));

    [Fact]
    public Task TrainableMembers_CountEveryParameterOfTheirLayer()
        // LoRA r=4 on Linear(64, 64): 512. [Trainable] Linear(64, 10): 64 * 10 + 10 = 650; without bias Linear(64, 10,
        // hasBias: false): 640; [Trainable] Embedding(100, 8): 800. 512 + 650 + 640 + 800 = 2,602. The [Trainable] member
        // built from a constructor parameter is not counted (1 here); the frozen one is not trainable.
        => PeftAnalyzerTest.VerifyAsync("""
            public sealed partial class {|#0:Classifier|} : Module<Tensor, Tensor>
            {
                [LoRA(4)] private Module<Tensor, Tensor> proj = Linear(64, 64);
                [Trainable] private Module<Tensor, Tensor> head = Linear(64, 10);
                [Trainable] private Module<Tensor, Tensor> head2 = Linear(64, 10, hasBias: false);
                [Trainable] private Module<Tensor, Tensor> table = Embedding(100, 8);
                [Trainable] private Module<Tensor, Tensor> sized;
                private Module<Tensor, Tensor> frozen = Linear(512, 512);

                public Classifier(long n) : base(nameof(Classifier))
                {
                    sized = Linear(n, n);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => head.call(proj.call(x));
            }
            """,
            BudgetConfig("2601"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0).WithArguments("Classifier", "2,602", "2,601", "1"));

    [Fact]
    public Task ExactlyAtBudget_NoBudget_OrEmptyProperty_IsAccepted()
        => Task.WhenAll(
            PeftAnalyzerTest.VerifyAsync(OneCountableLoRA.Replace("{|#0:Attention|}", "Attention"), BudgetConfig("1024")),
            PeftAnalyzerTest.VerifyAsync(OneCountableLoRA.Replace("{|#0:Attention|}", "Attention")),
            PeftAnalyzerTest.VerifyAsync(OneCountableLoRA.Replace("{|#0:Attention|}", "Attention"), BudgetConfig("")));

    [Fact]
    public Task LargeCounts_UseThousandsSeparators_AndCountLoKrAndPromptTuning()
        // LoRA r=64 on Linear(4096, 4096): 524,288. LoKr r=8 on Linear(768, 768): w1 [24, 24] = 576 plus
        // w2_a [32, 8] and w2_b [8, 32] = 512, so 1,088. Prompt tuning 20 x 4096 = 81,920. 2 x 524,288 + 1,088 + 81,920 = 1,131,584.
        // The frozen member's adapter is not trainable (PEFT0008) and not counted.
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(64)] private Module<Tensor, Tensor> q_proj = Linear(4096, 4096);
                [LoRA(64)] private Module<Tensor, Tensor> v_proj = Linear(4096, 4096);
                [Kronecker(8, Name = "lokr")] private Module<Tensor, Tensor> o_proj = Linear(768, 768);
                [PromptTune(20, Name = "prompt")] private Module<Tensor, Tensor> embed = Embedding(32000, 4096);
                [Freeze, {|#1:LoRA(64)|}] private Module<Tensor, Tensor> k_proj = Linear(4096, 4096);
                """).Replace("public sealed partial class Attention", "public sealed partial class {|#0:Attention|}"),
            BudgetConfig("1_000_000"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0)
                .WithArguments("Attention", "1,131,584", "1,000,000", "0"),
            PeftAnalyzerTest.Diagnostic("PEFT0008").WithLocation(1)
                .WithArguments("LoRA", "k_proj", "the member is marked [Freeze]"));

    [Fact]
    public Task BudgetWithCommaSeparators_IsParsed()
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(64)] private Module<Tensor, Tensor> q_proj = Linear(4096, 4096);
                """).Replace("public sealed partial class Attention", "public sealed partial class {|#0:Attention|}"),
            BudgetConfig("500,000"),
            PeftAnalyzerTest.Diagnostic("PEFT0010").WithLocation(0)
                .WithArguments("Attention", "524,288", "500,000", "0"));

    [Theory]
    [InlineData("lots")]
    [InlineData("-5")]
    [InlineData("1.5e6")]
    [InlineData("_1000")]
    [InlineData("99999999999999999999")]
    public Task UnparsableBudget_ReportsPEFT0011OnceWithoutLocation(string value)
        => PeftAnalyzerTest.VerifyAsync(
            Module("""
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """) + Module("""
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                """, name: "Mlp"),
            BudgetConfig(value),
            PeftAnalyzerTest.Diagnostic("PEFT0011").WithMessage(
                $"MSBuild property PeftMaxTrainableParameters has the value '{value}', which is not {ExpectedForm}"));

    [Fact]
    public Task UnparsableBudget_IsReportedEvenWithoutPeftAttributes()
        => PeftAnalyzerTest.VerifyAsync(
            "public static class Empty { }",
            BudgetConfig("2M"),
            PeftAnalyzerTest.Diagnostic("PEFT0011").WithArguments("PeftMaxTrainableParameters", "2M", ExpectedForm));

    [Theory]
    [InlineData("2000000", 2000000L)]
    [InlineData(" 2_000_000 ", 2000000L)]
    [InlineData("2,000,000", 2000000L)]
    [InlineData("0", 0L)]
    [InlineData("9223372036854775807", long.MaxValue)]
    public void ValidValues_Parse(string text, long expected)
    {
        Assert.Equal(PeftMSBuildOptions.Status.Valid, PeftMSBuildOptions.ParseNonNegativeInteger(text, out long value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void MissingValues_AreUnset(string? text)
        => Assert.Equal(PeftMSBuildOptions.Status.Unset, PeftMSBuildOptions.ParseNonNegativeInteger(text, out _));

    [Theory]
    [InlineData("+5")]
    [InlineData("1_000_")]
    [InlineData("0x10")]
    [InlineData("1 000")]
    [InlineData("9223372036854775808")]
    public void InvalidValues_AreInvalid(string text)
        => Assert.Equal(PeftMSBuildOptions.Status.Invalid, PeftMSBuildOptions.ParseNonNegativeInteger(text, out _));
}
