import { Body, Controller, Post } from '@nestjs/common';
import { InventoryService } from './inventory.service';

@Controller('inventory')
export class InventoryController {
  constructor(private readonly inventory: InventoryService) {}

  @Post('move')
  move(
    @Body() body: { from: string; to: string; quantity: number },
  ): Promise<Record<string, number>> {
    return this.inventory.move(body.from, body.to, Number(body.quantity));
  }
}
